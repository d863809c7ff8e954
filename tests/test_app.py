"""``python app.py`` as a person runs it: help, bad settings, and a fresh machine with no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_app(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, "app.py", *args], cwd=ROOT, env={**base, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )


def test_help_lists_every_flag_and_variable() -> None:
    result = run_app("--help")
    assert result.returncode == 0
    for word in ("--provider", "--base-url", "--models", "--host", "--port", "--share",
                 "OPENAI_API_KEY", "CHATBOT_MODELS", "CHATBOT_CONTEXT_TOKENS", "CHATBOT_MAX_TOKENS",
                 "CHATBOT_SYSTEM_PROMPT", "GRADIO_SERVER_PORT", "lemondata"):
        assert word in result.stdout


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CHATBOT_PROVIDER": "nope"}, "CHATBOT_PROVIDER"),
        ({"CHATBOT_MODELS": "fast=,=x"}, "CHATBOT_MODELS"),
        ({"CHATBOT_CONTEXT_TOKENS": "lots"}, "CHATBOT_CONTEXT_TOKENS"),
        ({"CHATBOT_MAX_TOKENS": "-5"}, "CHATBOT_MAX_TOKENS"),
        ({"OPENAI_BASE_URL": "ftp://x"}, "OPENAI_BASE_URL"),
    ],
)
def test_bad_value_stops_startup_with_one_line(env: dict[str, str], variable: str) -> None:
    result = run_app(env=env)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and variable in lines[0] and "Traceback" not in result.stderr


def _imported(stderr: str) -> set[str]:
    """The modules ``python -X importtime`` reports as imported (one ``import time:`` line each)."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize(("args", "env", "status"), [(("--help",), {}, 0), ((), {"CHATBOT_MAX_TOKENS": "abc"}, 2)])
def test_help_and_a_bad_value_answer_before_gradio_and_the_sdk_are_imported(
    args: tuple[str, ...], env: dict[str, str], status: int
) -> None:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "app.py", *args], cwd=ROOT, env={**base, **env},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == status
    imported = _imported(result.stderr)
    assert "chatbot.core.settings" in imported  # the report reads what was imported
    assert not imported & {"gradio", "openai", "uvicorn", "fastapi", "chatbot.core.limits", "chatbot.core.errors"}
    if status:
        said = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
        assert said == ["switchboard: CHATBOT_MAX_TOKENS: input should be a valid integer, unable to parse "
                        "string as an integer, got 'abc'"]


def _offline(*args: str) -> dict:
    """Run tests/scripts/offline_demo.py with an empty environment, in a network namespace with only
    loopback when this machine allows one (it does as root), so nothing outside can be reached."""
    script = [sys.executable, str(ROOT / "tests" / "scripts" / "offline_demo.py"), *args]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    namespaces = shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    if namespaces and namespaces.returncode == 0:
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *script]
    else:  # pragma: no cover - without the namespace the machine's own network rules apply
        command = script
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def offline_share() -> dict:
    """One offline start for both tests below: ``python app.py --share`` is the demo's start plus the share
    link's attempt (the plain ``python app.py`` start: test_api.py's two-process test)."""
    return _offline("--share")


@pytest.mark.slow
def test_no_network_no_environment_demo_mode_streams_a_reply(offline_share: dict) -> None:
    result = offline_share
    assert result["started"], result["output"][-2000:]
    assert "demo simulator" in result["reply"] and "Hello offline" in result["reply"]
    assert "Demo mode" in result["page"]
    assert "Traceback" not in result["output"]


@pytest.mark.slow
def test_share_without_network_warns_and_keeps_serving(offline_share: dict) -> None:
    result = offline_share
    assert result["started"] and "demo simulator" in result["reply"]
    assert "share link could not be created" in result["output"]


def test_readme_front_matter_makes_a_gradio_space() -> None:
    """Hugging Face Spaces reads the README's YAML front matter: a Gradio Space running app.py on the Gradio
    version the tests run against."""
    import gradio
    import yaml

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n")
    front = yaml.safe_load(readme.split("---\n", 2)[1])
    assert front["sdk"] == "gradio" and front["title"] == "Switchboard"
    assert str(front["sdk_version"]) == gradio.__version__
    assert (ROOT / front["app_file"]).is_file()
    requirements = (ROOT / "requirements.txt").read_text()
    major, minor = gradio.__version__.split(".")[:2]  # the tested minor version, pinned (chatbot/compat.py)
    assert f"\ngradio>={front['sdk_version']},<{major}.{int(minor) + 1}\n" in requirements
    assert "Secret" in readme and "CHATBOT_BROWSER_SECRET" in readme


def test_listening_socket_gets_tcp_nodelay() -> None:
    """asyncio sets TCP_NODELAY on accepted connections only when the listening socket says it is TCP;
    without it small SSE writes wait ~40 ms for Nagle's algorithm and the peer's delayed ACK."""
    import socket

    import app as switchboard

    sock = switchboard._bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_settle_heap_freezes_the_built_app_and_widens_the_young_generation() -> None:
    import gc

    import app as switchboard

    threshold = gc.get_threshold()
    try:
        switchboard.settle_heap()
        assert gc.get_freeze_count() > 0  # what is alive now is never scanned again by a full collection
        assert gc.get_threshold() == (switchboard.GC_YOUNG_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_an_idle_connection_stays_open_longer_than_a_balancer_keeps_it_pooled(serve) -> None:
    """haproxy keeps idle connections to a replica pooled and purges them only every few seconds
    (``pool-purge-delay``, 5 s by default); a request it sends on one the replica has just closed is lost, and it
    closes the visitor's connection without an answer (the replicas benchmark: "Server disconnected without
    sending a response"). uvicorn's own default closes an idle connection after 5 s: the app keeps it longer."""
    import http.client
    import time
    from urllib.parse import urlsplit

    url = urlsplit(serve())
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    try:
        sockets = []
        for _ in range(2):
            connection.request("GET", "/healthz")  # http.client sends on the open connection, never reconnects
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.read()
            sockets.append(connection.sock)
            time.sleep(6.5)  # idle past uvicorn's default keep-alive (5 s)
        assert sockets[0] is sockets[1] is not None  # one connection answered both
    finally:
        connection.close()
