"""Claims on a local result store: one computer per key across processes, as hard links.

A claim must exclude other processes and other threads, be taken over when its process died,
and leave nothing behind once released; as a link to the process's token it allocates no
inode per row. These run the real `Claims` on real files and real processes.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from latent.prefect._claims import TOKEN_PREFIX, Claims

KEY = "ab" * 32


def _entries(claims: Claims) -> tuple[list[str], list[str]]:
    names = sorted(os.listdir(claims.directory))
    return (
        [n for n in names if not n.startswith(TOKEN_PREFIX)],
        [n for n in names if n.startswith(TOKEN_PREFIX)],
    )


def test_a_claim_is_a_link_to_this_process_token_and_release_leaves_only_the_token(
    tmp_path: Path,
) -> None:
    claims = Claims(tmp_path / "results")
    assert claims.hold(KEY)
    held, tokens = _entries(claims)
    assert held == [KEY] and len(tokens) == 1
    token = claims.directory / tokens[0]
    claim = claims.directory / KEY
    assert os.path.samefile(token, claim)  # no inode of its own
    _host, pid, _started = claim.read_text().split()
    assert pid == str(os.getpid())
    claims.release(KEY)
    assert _entries(claims) == ([], tokens)


def test_another_thread_of_this_process_waits_for_the_claim(tmp_path: Path) -> None:
    claims = Claims(tmp_path / "results")
    assert claims.hold(KEY)
    answers: list[bool] = []
    other = threading.Thread(target=lambda: answers.append(Claims(tmp_path / "results").hold(KEY)))
    other.start()
    other.join()
    assert answers == [False]
    claims.release(KEY)
    assert Claims(tmp_path / "results").hold(KEY)


HOLD_AND_DIE = """
import os, sys
from pathlib import Path
from latent.prefect._claims import Claims
claims = Claims(Path(sys.argv[1]))
assert claims.hold(sys.argv[2])
if sys.argv[3] == "die":
    os._exit(0)  # killed: no release, no exit handlers
"""


def _run_holder(results: Path, key: str, how: str) -> None:
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(HOLD_AND_DIE), str(results), key, how],
        check=True,
        timeout=120,
    )


def test_a_dead_process_claim_is_taken_over_and_its_token_swept(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _run_holder(results, KEY, "die")
    claims = Claims(results)
    held, tokens = _entries(claims)
    assert held == [KEY] and len(tokens) == 1  # what a killed process leaves
    assert claims.hold(KEY)  # taken over: its process is gone
    held, tokens = _entries(claims)
    assert held == [KEY]
    assert tokens == [f"{TOKEN_PREFIX}{os.uname().nodename}-{os.getpid()}"]  # the dead one swept
    assert os.path.samefile(claims.directory / tokens[0], claims.directory / KEY)


def test_a_process_that_exits_removes_its_token(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _run_holder(results, KEY, "exit")
    held, tokens = _entries(Claims(results))
    assert tokens == []
    # it exited holding the claim (a crash inside a row would): still taken over
    assert held == [KEY]
    assert Claims(results).hold(KEY)


def test_a_claims_directory_removed_meanwhile_is_made_again(tmp_path: Path) -> None:
    claims = Claims(tmp_path / "results")
    assert claims.hold(KEY)
    claims.release(KEY)
    for name in os.listdir(claims.directory):  # `latent cache clear` removes everything
        os.unlink(claims.directory / name)
    os.rmdir(claims.directory)
    assert claims.hold(KEY)
    assert os.path.samefile(claims.directory / KEY, claims.directory / _entries(claims)[1][0])


def test_without_hard_links_a_claim_is_a_file_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some filesystems (FAT, some FUSE and SMB mounts) refuse hard links; none is mountable
    here, so `os.link` answers as they do."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    claims = Claims(tmp_path / "results")
    assert claims.hold(KEY)
    held, tokens = _entries(claims)
    assert held == [KEY] and tokens == []
    assert (claims.directory / KEY).read_text().split()[1] == str(os.getpid())
    assert not Claims(tmp_path / "results").hold(KEY)  # still exclusive
    claims.release(KEY)
    assert _entries(claims) == ([], [])
