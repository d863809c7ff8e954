"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

try:  # tests/ on sys.path (pytest's default "prepend" import mode, no tests/__init__.py)
    from fake_upstream import FakeUpstream
except ImportError:  # pragma: no cover - tests imported as a package / importlib mode
    from tests.fake_upstream import FakeUpstream


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    """One fake OpenAI-compatible server for the whole session (see tests/fake_upstream.py)."""
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def fake(fake_upstream: FakeUpstream) -> FakeUpstream:
    """The session's fake upstream, reset (empty queue and records, default behaviour) for this test."""
    fake_upstream.reset()
    return fake_upstream


TEST_KEY = "sk-test-switchboard-0123456789abcdef"


def make_settings(base_url: str | None, **env: str):
    """Settings for a test: only the given environment, no .env file, the fake as upstream."""
    from chatbot.core.settings import Settings

    # The provider's live model list stays off unless a test asks for it (CHATBOT_LIVE_MODELS=1): the
    # catalogue is then the configured one, the same in every test.
    environ = {"OPENAI_API_KEY": TEST_KEY, "CHATBOT_MAX_RETRIES": "0", "CHATBOT_LIVE_MODELS": "0", **env}
    if base_url is not None:
        environ["OPENAI_BASE_URL"] = base_url
    return Settings.load([], environ=environ, env_file=None)


@pytest.fixture
def settings_for(fake: FakeUpstream):
    """``settings_for(**env)``: Settings pointed at the fake upstream with extra environment."""

    def factory(**env: str):
        return make_settings(fake.base_url, **env)

    return factory


#: How long a test waits for a process it stopped or killed to exit (bounded, roomy for a loaded machine).
PROCESS_EXIT_S = 15
#: How long a test waits for one reply through gradio_client (``predict``) or for a helper thread to end.
REPLY_S = 60

@pytest.fixture
def serve(fake: FakeUpstream, tmp_path) -> Iterator:
    """``serve(**env)``: the whole app (UI and HTTP API, ``app.build_server``) on a free port against the
    fake upstream, with a database of its own; returns its URL. Every server is stopped after the test."""
    import app as switchboard

    running = []

    def start(**env: str) -> str:
        env.setdefault("CHATBOT_DB", str(tmp_path / f"switchboard-{len(running)}.db"))
        server = switchboard.serve_in_thread(switchboard.build_server(make_settings(fake.base_url, **env)))
        running.append(server)
        return server.url

    yield start
    for server in running:
        server.stop()


REDIS_BINARY = shutil.which("redis-server")
NO_REDIS = "redis-server is not installed (apt-get install -y redis-server; .ci/run installs it)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



def stop_process(process: subprocess.Popen, timeout: float = PROCESS_EXIT_S) -> None:
    """Terminate ``process`` if it still runs, then kill it if it has not exited within ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

class RedisServer:
    """A throwaway redis-server on 127.0.0.1 and a free port, no persistence (``args`` are further
    redis-server options, e.g. ``"--appendonly", "yes", "--dir", path``; later options win)."""

    def __init__(self, *args: str) -> None:
        if REDIS_BINARY is None:
            if os.environ.get("CI"):  # CI installs it: a missing binary there is a broken CI, not a skip
                pytest.fail(NO_REDIS)
            pytest.skip(NO_REDIS)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.args = args
        self.start()

    def start(self) -> None:
        """Start (again, on the same port and options)."""
        assert REDIS_BINARY is not None
        self.process = subprocess.Popen(
            [REDIS_BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # up (with a password: NOAUTH)
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("redis-server did not start")
            time.sleep(0.01)

    def kill(self) -> None:
        """kill -9, as a crash does."""
        self.process.kill()
        self.process.wait(PROCESS_EXIT_S)

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (skips the test when the binary is missing)."""
    server = RedisServer()
    yield server
    server.stop()


def predict(client: Any, *args: Any, timeout: float = REPLY_S, **kwargs: Any) -> Any:
    """``client.predict(...)`` for a gradio_client ``Client``, bounded: gradio_client's own waits forever."""
    return client.submit(*args, **kwargs).result(timeout=timeout)


def join_all(threads: Iterable[threading.Thread], timeout: float = REPLY_S) -> None:
    """Join ``threads`` within one shared deadline (not ``timeout`` each); fail if any is still running."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), f"{thread.name} still running after {timeout:g} s"


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy and return it (a bounded wait for an event, not a timing check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout:g} s")
        time.sleep(0.01)
