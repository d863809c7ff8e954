"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

# --- parallel runs -------------------------------------------------------------------------------------
# pyproject's addopts run the suite on pytest-xdist workers (`-n N --dist loadgroup`); `-n 0` or
# `-p no:xdist` runs it in one process (debugging, --pdb). Each worker is a process of its own: session
# fixtures (the fake upstream, a redis-server) are per worker, tmp_path is per worker, every server takes
# a free port. The groups: see _group; GroupScheduling sends each group to one worker.

def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """With ``-p no:xdist`` the addopts' ``-n``/``--dist`` are accepted and mean one process (``-n`` is a
    lowercase short option, which pytest reserves to plugins' ``_addoption``, as xdist itself registers it)."""
    if not pluginmanager.has_plugin("xdist"):
        group = parser.getgroup("xdist disabled (-p no:xdist)")
        group._addoption("-n", "--numprocesses", dest="numprocesses", default=None, help="ignored: one process")
        group.addoption("--dist", dest="dist", default="no", help="ignored: one process")


def _group(item: pytest.Item) -> tuple[int, str]:
    """(rank, group) of a test: one worker runs a group's tests in a row; lower ranks are sent first, so
    that the long tests start early rather than end the run alone, and the many short ones come last and
    fill the workers evenly. A module whose tests share a module- or class-scoped fixture (an app server, a
    chromium, balancers) is one group, so that the fixture is set up once, not once per worker: each browser
    module is one (its own chromium), sent right after the benchmark runs, since the browser modules together
    are longer than a worker's share of the run; then the groups of process-heavy modules (``slow``, the
    real model), the other module groups, the process-heavy tests one by one. Every other test is a group
    of its own."""
    if item.get_closest_marker("bench"):
        return 0, item.nodeid  # the longest single test
    module = item.nodeid.split("::")[0]
    if item.get_closest_marker("browser"):
        return 1, module
    heavy = item.get_closest_marker("slow") or item.get_closest_marker("llama")
    scopes = {defs[-1].scope for defs in item._fixtureinfo.name2fixturedefs.values() if defs}
    if scopes & {"module", "class", "package"}:
        return (2 if heavy else 3), module
    return (4 if heavy else 5), item.nodeid


def _groups_file(testrunuid: str) -> Path:
    """Where the workers leave {test id: group} for the controller (which collects nothing itself)."""
    return Path(tempfile.gettempdir()) / f"switchboard-pytest-groups-{testrunuid}.json"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: order the collection by group rank (stable; a group takes its first test's
    rank) and write the groups for GroupScheduling. One process: the files' own order."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    groups = {item: _group(item) for item in items}
    rank: dict[str, int] = {}
    for item in items:
        rank.setdefault(groups[item][1], groups[item][0])
    items.sort(key=lambda item: rank[groups[item][1]])
    path = _groups_file(workerinput["testrunuid"])
    part = path.with_name(f"{path.name}.{workerinput['workerid']}")
    part.write_text(json.dumps({item.nodeid: groups[item][1] for item in items}))
    os.replace(part, path)  # every worker collects the same tests: whichever lands last is the same map


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own choice
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``: xdist's own loadgroup reads groups from node ids, which pytest 9.2 no longer
    lets it change (pytest-xdist issue 1386), so this scheduler reads the workers' groups instead."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                path = _groups_file(config.getoption("testrunuid"))
                self.groups = json.loads(path.read_text()) if path.is_file() else {}
                path.unlink(missing_ok=True)
            return self.groups.get(nodeid, nodeid.split("::")[0])  # no map: a file per worker

    return GroupScheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    # tiktoken's cache folder is set once, before any thread starts: the app's ensure_offline_encodings()
    # writes os.environ when it is unset, which races with httpx reading os.environ in a running server's
    # thread ("dictionary changed size during iteration"), since the tests build several apps in one process
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        folder = f"switchboard-tests-tiktoken-{os.getuid()}"
        os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), folder)
    if (config.pluginmanager.has_plugin("xdist") and config.getoption("dist") == "loadgroup"
            and not hasattr(config, "workerinput")):
        config.option.loadscopereorder = False  # send groups in the workers' order (by rank), not by size
        config.option.testrunuid = config.option.testrunuid or uuid.uuid4().hex  # names the groups file


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


@pytest.fixture(scope="module")
def offline_encodings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tokenisers read from the package's offline copies into a cache folder of this module's own."""
    from chatbot.core.tokens import ensure_offline_encodings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("tiktoken-cache")))
        ensure_offline_encodings()
        yield


#: How long a test waits for a process it stopped or killed to exit (bounded, roomy for a loaded machine).
PROCESS_EXIT_S = 15
#: How long a test waits for ``python app.py`` (a process of its own: Gradio's imports, then the app) to
#: answer: minutes on a 2-core machine running the suite on several workers beside other work.
APP_START_S = 180
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


@contextlib.asynccontextmanager
async def page_client(url: str) -> AsyncIterator[tuple[Any, dict, str]]:
    """(target, the page's values, its session) for the benchmark's page client (bench/page_steps.py: every step
    a browser's page sends) on a page of the app at ``url`` whose load events have run; closed after."""
    from types import SimpleNamespace

    from bench.clients import BrowserChatTarget, fetch_config, make_http_client

    client = make_http_client()
    target = BrowserChatTarget("test", SimpleNamespace(url=url.rstrip("/")), client,
                               await fetch_config(client, url.rstrip("/")))
    assert target.page_steps is not None
    try:
        page, values = uuid.uuid4().hex[:12], target.new_page()
        async with target.pages.page() as pages:
            assert (await target.page_steps.load(values, page, pages)).error is None
        yield target, values, page
    finally:
        await target.close()
        await client.aclose()
