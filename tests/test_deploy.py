"""The deployment in deploy/, tested as README's "Running several replicas" runs it: a redis-server, two
replicas of ``python app.py`` (subprocesses sharing the settings that must be equal) and Debian's haproxy
with deploy/haproxy.cfg as it is (the addresses from the environment), or nginx with deploy/nginx.conf
filled in the way envsubst does.

Checked through the balancer: the chat tab streams (gradio_client, several visitors, several calls each: it
needs sticky sessions), an HTTP conversation continues on the other replica, a limit is shared by both, and
when one replica is SIGKILLed mid-stream the other keeps serving while the dead one's visitors get an error,
find the cut reply stored as interrupted (the API) or shown with a note that says so (the chat tab's page,
reloaded from the survivor), and go on."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from browser_kit import ARGS, CHROMIUM, VIEWPORT, WAIT_MS, open_page, reply_ended, send
from conftest import PROCESS_EXIT_S, REPLY_S, TEST_KEY, RedisServer, free_port, predict, stop_process, wait_until
from fake_upstream import FakeUpstream
from gradio_client import Client
from playwright.sync_api import Page, expect, sync_playwright
from test_proxies import _binary

from chatbot.core.i18n import text
from chatbot.web.chats import STORAGE_KEY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # processes started per balancer, loaded machine

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
#: How long a replica may take to start (imports Gradio and the SDK; minutes on a loaded 2-core machine).
START_S = 240
BALANCERS = ("haproxy", "nginx")
#: Each balancer's tests have tokens of their own: both run in turn against the same replicas and redis,
#: where the API's limits count per token.
TOKENS = {f"{name}-{kind}": f"deploy-test-{name}-{kind}-token-0123456789"
          for name in ("conv", "limit", "kill") for kind in BALANCERS}
LIMIT = 3
#: The settings every replica must share (README, "Running several replicas"), plus the test's upstream.
SHARED = {
    "CHATBOT_BROWSER_SECRET": "deploy-test-browser-secret-0123456789",
    "CHATBOT_API_TOKENS": ",".join(TOKENS.values()),
    "CHATBOT_TRUSTED_PROXIES": "1",
    "CHATBOT_API_RATE_LIMIT": f"{LIMIT}/minute",
    "CHATBOT_RATE_LIMIT": "200/minute",
    "OPENAI_API_KEY": TEST_KEY,
    "CHATBOT_MAX_RETRIES": "0",
    "CHATBOT_LIVE_MODELS": "0",
}


class Replica:
    """``python app.py`` on a free port, in a folder of its own, with only the given settings."""

    def __init__(self, name: str, env: dict[str, str], tmp: Path) -> None:
        self.name = name
        self.env = env
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}/"
        self.home = tmp / name
        self.home.mkdir()
        self.log = self.home / "app.log"
        self.start()

    def start(self) -> None:
        """Start the process (again, after a kill: the same port, folder and settings)."""
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("CHATBOT_", "OPENAI_", "GRADIO_", "REDIS_")) and not k.endswith("_API_KEY")}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "app.py")], cwd=self.home, stdout=out, stderr=subprocess.STDOUT,
                env={**inherited, **self.env, "GRADIO_SERVER_NAME": "127.0.0.1",
                     "GRADIO_SERVER_PORT": str(self.port)},
            )
        self.ps = psutil.Process(self.process.pid)

    def wait_ready(self) -> None:
        def healthy() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"replica {self.name} exited: {self.log.read_text(errors='replace')[-3000:]}")
            try:
                return httpx.get(self.url + "healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.5)
                return False

        wait_until(healthy, START_S, f"replica {self.name} healthy")

    def holds(self, port: int, remote_port: int) -> bool:
        """Whether this replica owns the TCP connection from local ``port`` to ``remote_port``: both, since
        Linux may give one local port to connections that go to different places (short of free ports,
        this replica's connection to redis may have the port of the other one's connection upstream)."""
        return any(c.laddr and c.laddr.port == port and c.raddr and c.raddr.port == remote_port
                   for c in self.ps.net_connections(kind="tcp"))

    def stop(self) -> None:
        stop_process(self.process)


def _nginx_site(listen: int, replicas: list[str], tmp: Path) -> Path:
    """deploy/nginx.conf with only the SWITCHBOARD_* variables filled in (what README's envsubst does),
    included from a minimal main config that keeps nginx's files in ``tmp``."""
    values = {"SWITCHBOARD_LISTEN": f"127.0.0.1:{listen}",
              **{f"SWITCHBOARD_REPLICA_{i}": a for i, a in enumerate(replicas, 1)}}
    site = re.sub(r"\$\{(SWITCHBOARD_[A-Z0-9_]+)\}", lambda m: values[m.group(1)], (DEPLOY / "nginx.conf").read_text())
    root = tmp / "nginx"
    (root / "logs").mkdir(parents=True)
    (root / "switchboard.conf").write_text(site)
    conf = root / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""  # workers keep access to tmp
    temp = " ".join(f"{kind}_temp_path {root}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf.write_text(f"""{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 512; }}
http {{ log_format upstreams '$msec $request_method $uri $status upstream=$upstream_addr:$upstream_status '
                             'cookie=$cookie_switchboard_replica id=$request_id';
       access_log {root}/logs/access.log upstreams; {temp} include {root}/switchboard.conf; }}
""")
    return conf


class Balancer:
    """haproxy with deploy/haproxy.cfg, or nginx with deploy/nginx.conf, in front of ``replicas``."""

    def __init__(self, kind: str, replicas: list[str], tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ)
        if kind == "haproxy":
            env["SWITCHBOARD_LISTEN"] = f"127.0.0.1:{self.port}"
            env.update({f"SWITCHBOARD_REPLICA_{i}": a for i, a in enumerate(replicas, 1)})
            command = [_binary("haproxy"), "-db", "-f", str(DEPLOY / "haproxy.cfg")]
        else:
            conf = _nginx_site(self.port, replicas, tmp)
            command = [_binary("nginx"), "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"]
        self.log = tmp / f"{kind}.out"
        # where it says which replica it could not reach (nginx: "upstream server temporarily disabled"), and
        # nginx's access log: each request's replica and its status (haproxy's log says both in self.log)
        self.errors = tmp / "nginx" / "logs" / "error.log" if kind == "nginx" else self.log
        self.access = tmp / "nginx" / "logs" / "access.log" if kind == "nginx" else None
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)

        def up() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"{kind} exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return httpx.get(self.url + "healthz", timeout=10).status_code == 200
            except (OSError, httpx.HTTPError):
                time.sleep(0.1)
                return False

        wait_until(up, 30, f"{kind} serving")

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class Deployment:
    kind: str
    url: str
    replicas: list[Replica]
    balancer_log: Path
    access_log: Path | None = None

    def explained(self, failure: AssertionError) -> AssertionError:
        """``failure`` with what the balancer logged (a replica taken out moves its visitors' sessions), which
        replica is which, and nginx's last requests with the replica each went to."""
        def tail(path: Path | None) -> str:
            return path.read_text(errors="replace")[-4000:] if path is not None and path.exists() else ""

        names = ", ".join(f"{r.name} = {r.address}" for r in self.replicas)
        return AssertionError(f"{failure}\n--- replicas: {names}\n--- the balancer's log:\n{tail(self.balancer_log)}"
                              f"\n--- its last requests:\n{tail(self.access_log)}")

    def bearer(self, name: str) -> dict[str, str]:
        """The header of this balancer's token ``name``."""
        return {"Authorization": f"Bearer {TOKENS[f'{name}-{self.kind}']}"}

    def replica_of(self, fake: FakeUpstream, marker: str) -> Replica:
        """The replica that sent the fake the request whose last message contains ``marker``."""
        record = wait_until(lambda: next((r for r in list(fake.requests) if marker in str(r.messages[-1])), None),
                            REPLY_S, f"the request {marker!r} upstream")
        return wait_until(lambda: next((r for r in self.replicas if r.holds(record.client_port, fake.port)), None),
                          10, f"the replica that sent {marker!r}")


@pytest.fixture(scope="module")
def replicas(fake_upstream: FakeUpstream, tmp_path_factory) -> Iterator[list[Replica]]:
    """A redis-server and two replicas on it, for each balancer in turn (``deployment``)."""
    tmp = tmp_path_factory.mktemp("deploy")
    redis = RedisServer()
    env = {**SHARED, "REDIS_URL": redis.url, "OPENAI_BASE_URL": fake_upstream.base_url}
    started: list[Replica] = []
    try:
        started += [Replica(name, env, tmp) for name in ("a", "b")]
        yield started
    finally:
        for replica in started:
            replica.stop()
        redis.stop()


@pytest.fixture(scope="module", params=BALANCERS)
def deployment(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Deployment]:
    """The balancer in front of the module's replicas; a replica the other balancer's tests killed is started
    again first."""
    _binary(request.param)  # skip before starting anything
    replicas: list[Replica] = request.getfixturevalue("replicas")
    tmp = tmp_path_factory.mktemp(f"deploy-{request.param}")
    for replica in replicas:
        if replica.process.poll() is not None:
            replica.start()
    for replica in replicas:
        replica.wait_ready()
    balancer = Balancer(request.param, [r.address for r in replicas], tmp)
    try:
        yield Deployment(request.param, balancer.url, replicas, balancer.errors, balancer.access)
    finally:
        balancer.stop()


def test_the_chat_tab_streams_through_the_balancer_for_several_visitors(
    deployment: Deployment, fake: FakeUpstream
) -> None:
    client = Client(deployment.url, verbose=False)
    job = client.submit("stream me [[delay=0.05]]", model="fast", api_name="/chat")
    job.result(timeout=REPLY_S)
    outputs = job.outputs()
    assert outputs[-1].endswith("you said stream me"), outputs[-1]
    assert len(outputs) >= 3, outputs  # in pieces, as they came
    # several visitors (each on the replica its cookie names), several calls each: without sticky sessions
    # the queue's join and its event stream land on different replicas and gradio_client gets no answer
    visitors = [Client(deployment.url, verbose=False) for _ in range(3)]
    for turn in range(2):
        for number, visitor in enumerate(visitors):
            reply = predict(visitor, f"visitor {number} turn {turn}", model="fast", api_name="/chat")
            assert reply.endswith(f"you said visitor {number} turn {turn}"), reply
    assert {deployment.replica_of(fake, f"visitor {n} turn 0") for n in range(3)} <= set(deployment.replicas)


def test_an_http_conversation_continues_on_the_other_replica(deployment: Deployment, fake: FakeUpstream) -> None:
    a, b = deployment.replicas
    with httpx.Client(timeout=REPLY_S, headers=deployment.bearer("conv")) as http:
        first = http.post(a.url + "chat", json={"message": "My name is Ana."})
        assert first.status_code == 200, first.text
        cid = first.json()["conversation_id"]
        second = http.post(b.url + "chat", json={"message": "What is my name?", "conversation_id": cid})
        assert second.status_code == 200, second.text
        assert second.json()["conversation_id"] == cid
        assert "My name is Ana." in str(fake.last.messages)  # replica B sent replica A's turn as context
        events = _ws_turn(deployment, {"message": "Third turn over the balancer.", "conversation_id": cid})
        assert [e["type"] for e in events][:2] == ["start", "delta"] and events[-1]["type"] == "done", events
        assert events[0]["conversation_id"] == cid
        stored = http.get(deployment.url + f"conversations/{cid}")
    assert stored.status_code == 200, stored.text
    assert [(m["role"], m["status"]) for m in stored.json()["messages"]] == [
        ("user", "complete"), ("assistant", "complete")] * 3


def _ws_turn(deployment: Deployment, message: dict) -> list[dict]:
    """One message over the API's WebSocket (``/chat/ws``, through the balancer), its events up to ``done``."""
    from websockets.sync.client import connect

    events: list[dict] = []
    with connect(deployment.url.replace("http://", "ws://") + "chat/ws", additional_headers=deployment.bearer("conv"),
                 open_timeout=REPLY_S) as ws:
        ws.send(json.dumps(message))
        while not events or events[-1]["type"] not in ("done", "error"):
            events.append(json.loads(ws.recv(timeout=REPLY_S)))
    return events


def test_a_limit_is_shared_by_the_replicas(deployment: Deployment, fake: FakeUpstream) -> None:
    a, b = deployment.replicas
    with httpx.Client(timeout=REPLY_S, headers=deployment.bearer("limit")) as http:
        for url in (a.url, b.url, a.url):
            response = http.post(url + "chat", json={"message": "count me"})
            assert response.status_code == 200, response.text
        for url in (b.url, a.url, deployment.url):
            refused = http.post(url + "chat", json={"message": "one too many"})
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "limit_messages"
    assert len(fake.requests) == LIMIT


def test_a_killed_replica_leaves_the_other_serving(deployment: Deployment, fake: FakeUpstream) -> None:
    # A chat-tab visitor and, with the same cookie, an API client (and a browser) stream from one replica
    visitor = Client(deployment.url, verbose=False)
    tab = _browser_tab(deployment.url, visitor.cookies)
    cut_job = visitor.submit("endless ui [[endless=1]] [[delay=0.05]]", model="fast", api_name="/chat")
    victim = deployment.replica_of(fake, "endless ui")
    survivor = next(r for r in deployment.replicas if r is not victim)
    http = httpx.Client(timeout=REPLY_S, headers=deployment.bearer("kill"), cookies=visitor.cookies)
    stream = http.stream("POST", deployment.url + "chat/stream",
                         json={"message": "endless api [[endless=1]] [[delay=0.05]]"})
    response = stream.__enter__()
    lines = response.iter_lines()
    assert wait_until(lambda: next(lines).startswith("data: "), REPLY_S, "the API stream started")
    cid = response.headers["x-conversation-id"]
    assert deployment.replica_of(fake, "endless api") is victim  # one cookie, one replica, for both faces
    page = tab.__enter__()
    try:  # a failure here leaves no Playwright loop running in this worker (it breaks every later test)
        if page is not None:  # with Chromium: a page with that cookie, a finished turn, then one cut
            try:
                _browser_turns(page, deployment.url)
            except AssertionError as exc:
                raise deployment.explained(exc) from exc
            assert deployment.replica_of(fake, "endless page") is victim
        # ... while another visitor's reply streams from the survivor
        # (new visitors are spread by a random cookie: all of 16 on one live replica is a 1 in 65,536 chance)
        others = []
        while not others or deployment.replica_of(fake, others[-1][0]) is not survivor:
            if len(others) == 16:
                raise deployment.explained(AssertionError("no visitor landed on the other replica"))
            marker = f"slow reply {len(others):02d}"  # no marker holds another
            other = Client(deployment.url, verbose=False)
            others.append((marker, other, other.submit(f"{marker} [[delay=0.1]] [[chunk=2]]", model="fast",
                                                       api_name="/chat")))
        time.sleep(1.5)  # the API reply's partial text is saved about every second
        if deployment.balancer_log.name == "error.log":  # nginx: no live replica was taken out before the kill
            assert "temporarily disabled" not in deployment.balancer_log.read_text(), deployment.explained(
                AssertionError("nginx took a live replica out"))

        victim.process.kill()
        victim.process.wait(PROCESS_EXIT_S)

        marker, _, survivor_job = others[-1]
        assert survivor_job.result(timeout=REPLY_S).endswith(f"you said {marker}")  # the survivor kept streaming
        rest = []
        with contextlib.suppress(httpx.TransportError):  # the API client: the stream ends without [DONE]
            rest.extend(lines)
        assert "data: [DONE]" not in rest, rest
        stream.__exit__(None, None, None)
        # the chat-tab visitor: an error, not a silent end (gradio_client: CancelledError; Gradio's page reloads,
        # from the survivor, and says what happened: see _browser_goes_on)
        with pytest.raises(Exception):  # noqa: B017 - whichever exception gradio_client's version raises
            cut_job.result(timeout=REPLY_S)

        # ... and both go on, through the balancer, on the survivor
        again = predict(visitor, "after the crash", model="fast", api_name="/chat")
        assert again.endswith("you said after the crash"), again
        stored = http.get(deployment.url + f"conversations/{cid}").json()["messages"]
        assert stored[-1]["status"] == "interrupted" and stored[-1]["content"], stored[-1]
        going_on = http.post(deployment.url + "chat", json={"message": "go on", "conversation_id": cid})
        assert going_on.status_code == 200, going_on.text
        http.close()
        if page is not None:
            _browser_goes_on(page)
    finally:
        tab.__exit__(None, None, None)


@contextlib.contextmanager
def _browser_tab(url: str, cookies: dict[str, str]) -> Iterator[Page | None]:
    """A Chromium page carrying ``cookies`` for the balancer (so on their replica); None without Chromium."""
    if not CHROMIUM.exists() and not os.environ.get("CI"):
        yield None
        return
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.add_cookies([{"name": k, "value": v, "url": url} for k, v in cookies.items()])
            yield context.new_page()
        finally:
            browser.close()


def _browser_turns(page: Page, url: str) -> None:
    open_page(page, url)
    send(page, "page turn one")
    expect(page.locator("#chatbot")).to_contain_text("you said page turn one", timeout=WAIT_MS)
    reply_ended(page)
    send(page, "endless page [[endless=1]] [[delay=0.05]]")
    expect(page.locator("#chatbot")).to_contain_text("you said endless page", timeout=WAIT_MS)
    # the streaming reply is saved in the browser as it goes (chatbot/web/cut_reply.py): wait for one save
    shown = page.evaluate("key => localStorage.getItem(key)", STORAGE_KEY)
    page.wait_for_function("([key, before]) => localStorage.getItem(key) !== before", arg=[STORAGE_KEY, shown],
                           polling=100, timeout=WAIT_MS)


def _browser_goes_on(page: Page) -> None:
    """Its replica gone, Gradio's page reloads (from the other replica) and shows the conversation saved in the
    browser (readable there: the same CHATBOT_BROWSER_SECRET): the turn that was streaming, what had arrived,
    and a note that its server stopped; its next message is answered."""
    chat = page.locator("#chatbot")
    cut = chat.get_by_text(text("reply_cut", "en"))
    expect(cut).to_be_visible(timeout=WAIT_MS)  # the page reloaded (Gradio's, every 2 s until a server answers)
    reply_ended(page)
    expect(chat).to_contain_text("you said page turn one")
    expect(chat).to_contain_text("you said endless page")  # the question, then what had arrived
    send(page, "page after the crash")
    expect(chat).to_contain_text("you said page after the crash", timeout=WAIT_MS)
    expect(cut).to_be_visible()  # the note stays where it was
