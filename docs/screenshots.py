"""Screenshots of where a run's results are: MLflow's run page and trace view, Prefect's flow run.

Copies `examples/qa-eval` to a temporary directory, starts a Prefect server (with its UI) on a
free port, runs `latent run answer metrics` against it, starts the MLflow UI with `latent ui`,
and photographs the pages with headless Chromium (Debian: `apt-get install chromium`), driven
over its DevTools protocol (`websockets`, installed with Prefect) so it can wait for a page,
dismiss MLflow's first-visit hints and open Prefect's Artifacts tab. The PNGs go to `docs/img/`.
Every process it starts is stopped at the end.

    uv run --frozen python docs/screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WINDOW = "1440,1400"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)  # a starting server, bounded by the deadline
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("headless Chromium is needed: apt-get install -y chromium")


class Browser:
    """Headless Chromium driven over the DevTools protocol: open, click by text, screenshot."""

    def __init__(self, profile: Path) -> None:
        port = _free_port()
        self.process = subprocess.Popen(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--window-size={WINDOW}",
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(f"http://127.0.0.1:{port}/json/version", timeout_s=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
            pages = [t for t in json.loads(response.read()) if t["type"] == "page"]
        from websockets.sync.client import connect

        self.socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, text: str) -> None:
        """Go to `url` and wait (bounded) until the page shows `text`."""
        self.call("Page.navigate", url=url)
        self.wait_for(text)

    def wait_for(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.evaluate(f"document.body && document.body.innerText.includes({text!r})"):
                time.sleep(1.5)  # let the page finish drawing what it just loaded
                return
            time.sleep(0.25)
        raise RuntimeError(f"{text!r} did not appear on the page")

    def click(self, text: str) -> bool:
        """Click the innermost visible element whose text is `text`; False if there is none."""
        return bool(
            self.evaluate(
                "(() => { const all = [...document.querySelectorAll('body *')].filter(e =>"
                f" e.innerText && e.innerText.trim() === {text!r} && e.offsetParent !== null);"
                " const el = all[all.length - 1]; if (!el) return false; el.click(); return true;"
                " })()"
            )
        )

    def close_popups(self) -> None:
        """MLflow's first-visit hints and its assistant panel cover the page: dismiss them."""
        self.click("Got it")
        self.evaluate(
            "document.querySelectorAll('button[aria-label*=\"lose\"]')"
            ".forEach(b => { if (b.getBoundingClientRect().left > 900) b.click(); })"
        )
        time.sleep(0.5)

    def screenshot(self, out: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out.write_bytes(base64.b64decode(data))
        print(out)

    def close(self) -> None:
        self.socket.close()
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="latent-shots-") as tmp:
        project = Path(tmp) / "qa-eval"
        shutil.copytree(REPO / "examples" / "qa-eval", project)
        port = _free_port()
        env = {
            **os.environ,
            "PREFECT_HOME": str(Path(tmp) / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "COLUMNS": "160",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait(f"http://127.0.0.1:{port}/api/health")
            latent = str(BIN / "latent")
            subprocess.run([latent, "run", "answer", "metrics"], cwd=project, env=env, check=True)
            ui = subprocess.run(
                [latent, "ui", "--port", str(_free_port())],
                cwd=project,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            try:
                _photograph(project, ui.stdout, port, args.out)
            finally:
                subprocess.run([latent, "ui", "--stop"], cwd=project, env=env, check=False)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def _photograph(project: Path, ui_output: str, prefect_port: int, out: Path) -> None:
    from mlflow import MlflowClient

    from latent.prefect._links import mlflow_trace_url

    mlflow_url = next(
        line.split()[-1] for line in ui_output.splitlines() if line.startswith("MLflow UI:")
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{project / '.latent' / 'mlflow.db'}")
    runs = {}
    for flow in ("answer", "metrics"):
        experiment = client.get_experiment_by_name(f"qa-eval/{flow}")
        (run,) = client.search_runs([experiment.experiment_id], max_results=1)
        runs[flow] = run
    metrics, answer = runs["metrics"], runs["answer"]
    browser = Browser(project.parent / "chromium-profile")
    try:
        experiment = metrics.info.experiment_id
        browser.open(
            f"{mlflow_url}/#/experiments/{experiment}/runs/{metrics.info.run_id}", "Metrics"
        )
        browser.close_popups()
        browser.screenshot(out / "mlflow-run.png")

        (trace,) = client.search_traces(
            locations=[answer.info.experiment_id], run_id=answer.info.run_id, max_results=1
        )
        browser.open(f"{mlflow_url}/#/experiments/{answer.info.experiment_id}/traces", "Input")
        browser.close_popups()  # before opening the trace: its drawer has a close button too
        link = mlflow_trace_url(mlflow_url, answer.info.experiment_id, trace.info.trace_id)
        browser.open(link, "answer_question")
        browser.screenshot(out / "mlflow-trace.png")

        flow_run = metrics.data.tags["prefect.flow_run.id"]
        browser.open(f"http://127.0.0.1:{prefect_port}/runs/flow-run/{flow_run}", "Artifacts")
        browser.click("Artifacts")
        browser.wait_for("metrics-run")
        browser.click("metrics-run")
        browser.wait_for("Parameters")
        browser.screenshot(out / "prefect-flow-run.png")
    finally:
        browser.close()


if __name__ == "__main__":
    main()
