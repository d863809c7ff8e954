"""Run by tests/test_app.py, possibly inside a network namespace with only loopback: start
``python app.py`` with an empty environment, wait for the page, chat once, print the reply as JSON."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from gradio_client import Client

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    extra = sys.argv[1:]
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    result: dict = {"started": False}
    try:
        deadline = time.monotonic() + 180  # python app.py on a loaded 2-core machine (conftest.APP_START_S)
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    result["started"] = True
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        if result["started"]:
            result["page"] = httpx.get(url + "config", timeout=10).text
            job = Client(url, verbose=False).submit("Hello offline", model="fast", api_name="/chat")
            result["reply"] = job.result(timeout=60)
    finally:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate(timeout=15)
        result["output"] = output
    print(json.dumps(result))


if __name__ == "__main__":
    main()
