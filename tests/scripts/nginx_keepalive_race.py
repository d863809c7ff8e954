"""Does nginx, with deploy/nginx.conf's upstream settings, take a live replica out when the replica closes an
idle keep-alive connection as nginx reuses it? (uvicorn closes one after 5 s idle; nginx's upstream
keep-alive defaults to 60 s.) A replica taken out moves its visitors to the other one, where their Gradio
sessions are not: a page's reply never arrives (test_deploy.py's nginx variant, once, under load).

Two tiny uvicorn apps (uvicorn's defaults, as app.py runs it) behind nginx with deploy/nginx.conf filled in
as test_deploy does; requests with one sticky cookie, each after an idle gap around 5 s; counts what nginx
logged and which replica answered.

    python tests/scripts/nginx_keepalive_race.py [deploy/nginx.conf] [rounds]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[2]


def _app(name: str):  # noqa: ANN202 - an ASGI callable
    async def app(scope, receive, send):  # noqa: ANN001
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": name.encode()})
    return app


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(conf: Path, rounds: int) -> None:
    ports = [_free_port(), _free_port()]
    for name, port in zip("ab", ports, strict=True):
        server = uvicorn.Server(uvicorn.Config(_app(name), host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
    listen = _free_port()
    root = Path(tempfile.mkdtemp(prefix="nginx-race-"))
    (root / "logs").mkdir()
    values = {"SWITCHBOARD_LISTEN": f"127.0.0.1:{listen}",
              **{f"SWITCHBOARD_REPLICA_{i}": f"127.0.0.1:{p}" for i, p in enumerate(ports, 1)}}
    site = re.sub(r"\$\{(SWITCHBOARD_[A-Z0-9_]+)\}", lambda m: values[m.group(1)], conf.read_text())
    (root / "site.conf").write_text(site)
    temp = " ".join(f"{k}_temp_path {root}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(f"{user}\nworker_processes 1; pid {root}/nginx.pid; error_log {root}/logs/"
                                     f"error.log warn; events {{}} http {{ access_log off; {temp} include "
                                     f"{root}/site.conf; }}\n")
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    nginx = subprocess.Popen([binary, "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"])
    try:
        time.sleep(1.5)
        answered: dict[str, int] = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{listen}", cookies={"switchboard_replica": "visitor-1"}) as http:
            for n in range(rounds):
                name = http.get("/").text
                answered[name] = answered.get(name, 0) + 1
                time.sleep(4.90 + (n % 21) * 0.01)  # idle gaps from 4.90 s to 5.10 s
        log = (root / "logs" / "error.log").read_text()
        print(f"config: {conf}  rounds: {rounds}  answered by: {answered}")
        print(f"prematurely closed: {log.count('prematurely closed')}  reset: {log.count('reset by peer')}  "
              f"replica taken out: {log.count('temporarily disabled')}")
    finally:
        nginx.terminate()
        nginx.wait(10)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "deploy" / "nginx.conf",
         int(sys.argv[2]) if len(sys.argv) > 2 else 42)
