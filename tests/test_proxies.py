"""Behind a real reverse proxy (Debian's haproxy and nginx, run from a config in tmp_path): a forged
X-Forwarded-For does not reset a visitor's limits on any face (HTTP API, WebSocket, gradio_client's
``/chat``), and the address the app counts is the true client's (127.0.0.1 here).

haproxy appends its own ``X-Forwarded-For`` as another header line after the client's; nginx
(``$proxy_add_x_forwarded_for``) extends the client's line. The app trusts one hop
(``CHATBOT_TRUSTED_PROXIES=1``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port, make_settings, predict, stop_process
from fake_upstream import FakeUpstream
from gradio_client import Client

import app as switchboard

pytestmark = pytest.mark.slow  # haproxy and nginx started in front of the app

LIMIT = 3
FORGED = "6.6.6.{}"


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if found is None:
        reason = f"{name} is not installed (apt-get install -y {name}; .ci/run installs it)"
        if os.environ.get("CI"):  # CI installs it: a missing binary there is a broken CI, not a skip
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _haproxy_config(port: int, upstream: int, tmp: Path) -> list[str]:
    conf = tmp / "haproxy.cfg"
    conf.write_text(f"""
global
    maxconn 200
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
    option forwardfor
frontend web
    bind 127.0.0.1:{port}
    default_backend app
backend app
    server app 127.0.0.1:{upstream}
""")
    return [_binary("haproxy"), "-db", "-f", str(conf)]


def _nginx_config(port: int, upstream: int, tmp: Path) -> list[str]:
    root = tmp / "nginx"
    (root / "logs").mkdir(parents=True)
    conf = root / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""  # workers keep access to tmp_path
    conf.write_text(f"""
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_read_timeout 60s;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
""")
    return [_binary("nginx"), "-p", str(root), "-c", str(conf), "-g", "daemon off;"]


class Proxy:
    """A reverse proxy in front of ``upstream_port``, run in the foreground as a subprocess."""

    def __init__(self, kind: str, upstream_port: int, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        command = {"haproxy": _haproxy_config, "nginx": _nginx_config}[kind](self.port, upstream_port, tmp)
        self.log = tmp / f"{kind}.out"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{kind} did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture(params=["haproxy", "nginx"])
def behind_proxy(
    request: pytest.FixtureRequest, fake: FakeUpstream, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """(proxy URL, app URL): the production assembly with a small limit, one trusted proxy in front."""
    _binary(request.param)  # skip before starting anything
    settings = make_settings(
        fake.base_url, CHATBOT_TRUSTED_PROXIES="1", CHATBOT_RATE_LIMIT=f"{LIMIT}/minute",
        CHATBOT_DB=str(tmp_path / "switchboard.db"),
    )
    with switchboard.serve_in_thread(switchboard.build_server(settings)) as server:
        proxy = Proxy(request.param, server.port, tmp_path)
        try:
            yield proxy.url, server.url
        finally:
            proxy.stop()


def _forged(i: int) -> dict[str, str]:
    return {"X-Forwarded-For": FORGED.format(i)}


def _ws_events(url: str, headers: dict[str, str]) -> list[dict]:
    """The events for one message over the WebSocket, up to ``done`` (or a request-level error)."""
    from websockets.sync.client import connect

    events: list[dict] = []
    with connect(url.replace("http://", "ws://") + "chat/ws", additional_headers=headers, open_timeout=20) as ws:
        ws.send(json.dumps({"message": "hi over ws"}))
        while not events or (events[-1]["type"] != "done" and "status" not in events[-1]):
            events.append(json.loads(ws.recv(timeout=20)))
    return events


def test_forged_forwarded_for_does_not_reset_the_limit_behind_a_real_proxy(
    behind_proxy: tuple[str, str], fake: FakeUpstream
) -> None:
    proxy, app = behind_proxy
    with httpx.Client(timeout=30) as http:
        for i in range(LIMIT):  # the visitor uses up the limit, each time claiming another address
            response = http.post(proxy + "chat", json={"message": f"hi {i}"}, headers=_forged(i))
            assert response.status_code == 200, response.text
        # then every face refuses, whatever address is claimed
        for i in range(LIMIT, LIMIT + 4):
            response = http.post(proxy + "chat", json={"message": f"more {i}"}, headers=_forged(i))
            assert response.status_code == 429, response.text
            assert response.json()["error"]["code"] == "limit_messages"
            streamed = http.post(proxy + "chat/stream", json={"message": "more"}, headers=_forged(i + 50))
            assert streamed.status_code == 429 or "[ERROR] " in streamed.text, streamed.text
            assert f"{LIMIT} messages per minute" in streamed.text
    events = _ws_events(proxy, _forged(99))
    assert not [e for e in events if e["type"] == "delta"], events
    assert any(e["type"] == "error" and f"{LIMIT} messages per minute" in e["message"] for e in events), events
    client = Client(proxy, verbose=False, headers=_forged(77))
    replies = [predict(client, f"ui {i}", model="fast", api_name="/chat") for i in range(2)]
    assert all(f"{LIMIT} messages per minute" in reply for reply in replies), replies
    assert len(fake.requests) == LIMIT

    # The bucket that filled up is the true client's, 127.0.0.1: asked directly (the app's peer taken
    # as the trusted proxy), "127.0.0.1" is refused and another address is not.
    with httpx.Client(timeout=30) as http:
        as_client = http.post(app + "chat", json={"message": "x"}, headers={"X-Forwarded-For": "127.0.0.1"})
        other = http.post(app + "chat", json={"message": "y"}, headers={"X-Forwarded-For": "192.0.2.44"})
    assert as_client.status_code == 429 and other.status_code == 200, (as_client.text, other.text)

