"""An evaluation against an LLM API on 127.0.0.1, through the real `openai` client.

The server answers like the chat completions API, with latency, and with a 429 and a
`Retry-After` for the first request of every seventh prompt. The task is `async def` with a rate
limit a little under the server's; the server counts what it receives: every row completes, no
second ever sees more requests than the server allows, and a re-run sends it nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from project_dir import LATENT_TOML, ProjectDir

PROVIDER_RATE = 25  # requests per second the API allows
RATE = 20  # what the project allows itself: a margin under the provider's, as users set it


class _LLM(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: the upper-cased last message, after 30 ms."""

    server: _Server

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        self.server.record(prompt)
        if self.server.should_throttle(prompt):
            self._send(
                429,
                {"error": {"message": "rate limited", "type": "rate_limit"}},
                {"Retry-After": "0.2"},
            )
            return
        time.sleep(0.03)
        reply = {
            "id": "chatcmpl-local",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": prompt.upper()},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
        self._send(200, reply, {})

    def _send(self, status: int, payload: dict, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _LLM)
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.prompts: list[str] = []
        self.throttled: set[str] = set()

    def record(self, prompt: str) -> None:
        with self.lock:
            self.times.append(time.monotonic())
            self.prompts.append(prompt)

    def should_throttle(self, prompt: str) -> bool:
        number = int(prompt.rsplit(" ", 1)[-1])
        with self.lock:
            if number % 7 or prompt in self.throttled:
                return False
            self.throttled.add(prompt)
            return True

    def busiest_second(self, window: float = 0.95) -> int:
        """Most requests received within any `window` seconds (a little under one second, so
        that arrival jitter between client and server is not counted against the client)."""
        times = sorted(self.times)
        most, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= window:
                start += 1
            most = max(most, end - start + 1)
        return most


@pytest.fixture
def llm_server() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


EVAL_FLOW = """
from openai import AsyncOpenAI
from latent.prefect import flow, params, task

_clients = {}


def client() -> AsyncOpenAI:
    # one client for every row, as a user would keep it (the rows share one event loop)
    if params.base_url not in _clients:
        _clients[params.base_url] = AsyncOpenAI(
            base_url=params.base_url, api_key="sk-local-test", max_retries=0
        )
    return _clients[params.base_url]


@task("ask", span_type="LLM", limit="local_llm", retries=3, retry_delay_seconds=0.05)
async def ask(prompt: str) -> str:
    response = await client().chat.completions.create(
        model="local", messages=[{"role": "user", "content": prompt}]
    )
    return response.choices[0].message.content

@flow("evaluate")
def evaluate() -> list[str]:
    prompts = [f"question {i}" for i in range(60)]
    return [future.result() for future in ask.map(prompts)]
"""


@pytest.mark.slow
def test_an_async_openai_evaluation_respects_the_rate_and_retry_after(
    project: ProjectDir, llm_server: _Server
) -> None:
    project.write(
        "config/latent.toml",
        LATENT_TOML + f'\n[limits.local_llm]\nconcurrency = 8\nrate = "{RATE}/second"\n',
    )
    base_url = f"http://127.0.0.1:{llm_server.server_address[1]}/v1"
    project.flow("evaluate", EVAL_FLOW, parameters={"base_url": base_url})
    done = project.latent("run", "evaluate")
    assert "Failed" not in done.stdout

    answered = {p for p in llm_server.prompts}
    assert answered == {f"question {i}" for i in range(60)}  # every row completed
    throttled = {f"question {i}" for i in range(0, 60, 7)}
    assert llm_server.throttled == throttled  # and the 429'd ones were asked again
    assert len(llm_server.prompts) == 60 + len(throttled)
    # the provider's limit was never exceeded (the margin covers the time between a call taking
    # its token and its bytes reaching the server: a connection, a busy event loop)
    assert llm_server.busiest_second() <= PROVIDER_RATE

    before = len(llm_server.prompts)
    again = project.latent("run", "evaluate")
    assert "Cached" in again.stdout
    assert len(llm_server.prompts) == before  # nothing was asked twice
