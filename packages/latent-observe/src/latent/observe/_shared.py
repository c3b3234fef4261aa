"""The shared writer: MLflow imported once per user and machine, not once per run.

A writer process (`_writer`) keeps MLflow's CPU off the flow's threads, but a new one still pays
MLflow's start-up on every run: importing it and its SQLite store's modules takes 1.5-3 s of CPU,
longer than a fully cached run's own work, and on a 2-core machine it competes with the run for
the second core. The shared writer pays it once. A long-lived process (the *zygote*) imports
MLflow and the modules a store and a trace need, then waits on a Unix socket; for each flow
process that connects it forks a writer, which from then on is exactly a private writer
(`_writer.serve`): the connecting process's environment and working directory, its own store,
spans and MLflow globals, and its end when that process closes the connection or dies. Forking
copies the imported modules, so a run's writer is ready in milliseconds.

Where: ``<directory>/<key>.sock`` (the directory is Latent's state directory, given by the
caller: `share_writers`), with ``<key>.lock`` serialising the start (two runs starting at once
end with one zygote) and ``<key>.log`` for what the writers print. The key hashes the
interpreter, the versions and files of this package and MLflow, and the ``MLFLOW_*`` variables
(MLflow reads some at import): an upgrade, an edit of this package or another interpreter gets
a zygote of its own, and the old one exits after `IDLE_S` without a connection.

Only on Linux (a fork after MLflow's import, ``SO_PEERCRED``); elsewhere, or when anything here
fails (a socket path too long, a zygote that does not answer), a run starts a private writer as
before, without a warning: the shared writer is a start-up saving, never a requirement.
``LATENT_MLFLOW_WRITER=private`` always starts a private writer.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from latent.observe._writer import _read_frame, _write_frame

#: Seconds a zygote waits for a connection before it exits (a morning of runs shares one);
#: ``LATENT_MLFLOW_WRITER_IDLE`` sets another.
IDLE_S = 15 * 60.0
IDLE_ENV = "LATENT_MLFLOW_WRITER_IDLE"
_CHECK_S = 10.0  # how often an idle zygote checks that its socket is still there
#: How long a run waits for a zygote's first answer. A zygote another run just started may
#: still be importing MLflow (seconds, more on a loaded machine); a live one answers at once.
HELLO_WAIT_S = 60.0
#: The same for a zygote this run started: it answers once MLflow is imported.
STARTED_WAIT_S = 180.0
#: How long a new zygote may take to listen (it listens before it imports MLflow).
LISTEN_WAIT_S = 30.0
PROTOCOL = 1
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux
_ZYGOTE_MAIN = (
    "import sys; from latent.observe._shared import zygote; zygote(sys.argv[1], float(sys.argv[2]))"
)
_directory: list[Path] = []


def share_writers(directory: Path | None) -> None:
    """Let this process's writers be forked by the shared writer in `directory` (None: never)."""
    _directory[:] = [] if directory is None else [Path(directory)]


def available() -> bool:
    """Whether a run here may use the shared writer (Linux, and a directory was given)."""
    return bool(_directory) and sys.platform.startswith("linux") and hasattr(os, "fork")


def key() -> str:
    """What a zygote's imported code and MLflow's import-time settings depend on (see above)."""
    from importlib import metadata

    here = Path(__file__).parent
    parts = [sys.executable, sys.version, str(PROTOCOL)]
    for dist in ("latent-observe", "mlflow-skinny", "mlflow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(f"{dist}={metadata.version(dist)}")
    parts += [f"{p.name}:{p.stat().st_mtime_ns}" for p in sorted(here.glob("*.py"))]
    parts += sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MLFLOW_"))
    parts.append(os.environ.get("PYTHONPATH", ""))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class Connection:
    """A writer forked for this process: its two streams, and its pid (to stop it if stuck)."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.reader: IO[bytes] = sock.makefile("rb")
        self.writer: IO[bytes] = sock.makefile("wb")

    def wait_gone(self, timeout_s: float) -> bool:
        """Wait (bounded) until the writer's process is gone, not only its connection."""
        if self.pid <= 0:  # not answered yet: there is no writer to wait for
            return True
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except OSError:
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)

    def kill(self) -> None:
        if self.pid <= 0:  # never os.kill(0, ...): that is this process's own group
            return
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        for stream in (self.writer, self.reader):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with contextlib.suppress(OSError):
            self.sock.close()


def connect(exit_wait_s: float) -> Connection | None:
    """A writer forked by the shared writer (started if needed), or None: start a private one."""
    if not available():
        return None
    try:
        directory = _directory[0]
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = key()
        path = directory / f"{name}.sock"
        if len(str(path)) > _MAX_SOCKET_PATH:
            return None
        for _ in range(2):  # a zygote may exit (idle) just as it is connected to: once more
            sock, wait_s = _connect(path), HELLO_WAIT_S
            if sock is None:
                sock, wait_s = _start(directory, name, path), STARTED_WAIT_S
            if sock is None:
                return None
            connection = _hello(sock, exit_wait_s, wait_s, path)
            if connection is not None:
                return connection
        return None
    except Exception:  # the shared writer is a saving: anything odd, a private writer instead
        return None


def shared_writers(directory: Path) -> list[int]:
    """The pids of the shared writers listening in `directory` (a dead one's socket is removed)."""
    pids = []
    for path in sorted(Path(directory).glob("*.sock")):
        sock = _connect(path)
        if sock is None:
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        with sock:  # the writer it forks for this connection sees no hello and exits
            pids.append(_peer_pid(sock))
    return pids


def stop_shared_writers(directory: Path) -> list[int]:
    """Stop the shared writers in `directory` (runs' writers finish on their own); their pids."""
    stopped = []
    for pid in shared_writers(directory):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
    return stopped


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        return sock
    except OSError:  # no zygote, or a dead one's socket file (refused)
        sock.close()
        return None


def _peer(sock: socket.socket) -> tuple[int, int]:
    """The pid and uid of the process at the other end (the kernel's word, not the peer's)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    return int(pid), int(uid)


def _peer_pid(sock: socket.socket) -> int:
    return _peer(sock)[0]


def _start(directory: Path, name: str, path: Path) -> socket.socket | None:
    """Start the zygote unless another process did meanwhile (under the lock); connect to it."""
    from filelock import FileLock

    with FileLock(str(directory / f"{name}.lock"), timeout=LISTEN_WAIT_S):
        sock = _connect(path)
        if sock is not None:
            return sock
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead zygote's socket
        log_fd = os.open(directory / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(log_fd, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", _ZYGOTE_MAIN, str(path), f"{_idle_s():g}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # outlives this run; a Ctrl-C here is not for it
                close_fds=True,
            )
        deadline = time.monotonic() + LISTEN_WAIT_S
        while time.monotonic() < deadline and process.poll() is None:
            sock = _connect(path)
            if sock is not None:
                return sock
            time.sleep(0.005)
        with contextlib.suppress(OSError):
            process.kill()
        return None


def _idle_s() -> float:
    try:
        return max(1.0, float(os.environ.get(IDLE_ENV) or IDLE_S))
    except ValueError:
        return IDLE_S


def _hello(sock: socket.socket, exit_wait_s: float, wait_s: float, path: Path) -> Connection | None:
    """Hand the forked writer this process's environment; None if no writer answers in time."""
    sock.settimeout(wait_s)
    zygote_pid = 0
    try:
        zygote_pid, uid = _peer(sock)
        if uid != os.getuid():  # messages are pickles: only ever to and from this user
            sock.close()
            return None
        connection = Connection(sock, 0)
        hello = ("hello", PROTOCOL, dict(os.environ), os.getcwd(), exit_wait_s)
        _write_frame(connection.writer, pickle.dumps(hello, protocol=pickle.HIGHEST_PROTOCOL))
        payload = _read_frame(connection.reader)
    except (OSError, ValueError):
        payload = None
    if payload is None:
        sock.close()
        if zygote_pid:  # alive but silent that long: stuck; stopped, and another started
            with contextlib.suppress(OSError):
                os.kill(zygote_pid, signal.SIGKILL)
                path.unlink()  # the next attempt must not reach it while it dies
        return None
    answer, pid = pickle.loads(payload)
    if answer != "ready":
        sock.close()
        return None
    sock.settimeout(None)
    connection.pid = int(pid)
    return connection


# -- the zygote ----------------------------------------------------------------------------------


def zygote(path: str, idle_s: float) -> None:
    """The shared writer's long-lived process: listen, import MLflow, fork a writer per client."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()  # see `_writer.serve`: MLflow's objects are frozen once imported
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{path}.{os.getpid()}"
    os.umask(0o077)  # the socket (and the log): this user's only
    listener.bind(staging)
    listener.listen(128)
    os.replace(staging, path)  # clients connect from now on; they wait while MLflow imports
    inode = os.stat(path).st_ino
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, "1")  # no thread pools to fork (a writer does no algebra)
    from latent.observe import _mlflow_compat

    _mlflow_compat.preload_writer_modules()
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked writers are reaped by the kernel
    listener.settimeout(min(idle_s, _CHECK_S))
    last = time.monotonic()
    while True:
        try:
            client, _ = listener.accept()
        except TimeoutError:
            if time.monotonic() - last >= idle_s or not _still_ours(path, inode):
                break  # idle, or its directory was removed (a test's) or taken over
            continue
        except InterruptedError:
            continue
        last = time.monotonic()
        if _peer(client)[1] != os.getuid():  # messages are pickles: this user's processes only
            client.close()
            continue
        pid = os.fork()
        if pid == 0:
            listener.close()
            _writer_child(client)  # never returns
        client.close()
    if _still_ours(path, inode):  # a later zygote may have replaced it
        with contextlib.suppress(OSError):
            os.unlink(path)
    listener.close()  # a client that connected meanwhile sees the end and tries again
    os._exit(0)


def _still_ours(path: str, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _writer_child(client: socket.socket) -> None:
    """In the forked child: take the client's environment, then be its writer (`_writer.serve`)."""
    from latent.observe._writer import serve

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        client.settimeout(None)
        reader, writer = client.makefile("rb"), client.makefile("wb")
        payload = _read_frame(reader)
        if payload is None:
            os._exit(0)
        kind, protocol, environ, cwd, exit_wait_s = pickle.loads(payload)
        if kind != "hello" or protocol != PROTOCOL:
            _write_frame(writer, pickle.dumps(("unknown protocol", os.getpid())))
            os._exit(0)
        os.environ.clear()
        os.environ.update(environ)
        with contextlib.suppress(OSError):
            os.chdir(cwd)
        _write_frame(writer, pickle.dumps(("ready", os.getpid())))
    except BaseException:
        os._exit(1)
    serve(float(exit_wait_s), frames_in=reader, frames_out=writer)
