"""No event can make the server read or serve a file it was not given: attacked from outside, through
every event the page lists, on a public-style configuration (SPACE_ID set: limits and hardening as on
Spaces). Also: malformed payloads to every event get an error, never a traceback in the log."""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, make_settings
from fake_upstream import FakeUpstream

import app as switchboard
from chatbot.core.errors import render
from chatbot.web.chats_panel import VIEW


class Attack:
    """The app on a public-style configuration, run from a folder holding a canary ``.env``, a canary file
    and the app's own ``data/``; ``canaries`` must never leave the server. ``assembly``: "mounted" (the
    production one: ``build_server`` served by uvicorn) or "launched" (``build`` + ``launch``)."""

    def __init__(self, fake: FakeUpstream, folder: Path, assembly: str = "mounted") -> None:
        self.folder = folder
        self.canary = f"sk-canary-{secrets.token_hex(12)}"
        (folder / ".env").write_text(f"OPENAI_API_KEY={self.canary}-env\n")
        (folder / "secret.txt").write_text(f"the secret is {self.canary}-file\n")
        # Public (SPACE_ID), with the per-visitor limits off so that they hide nothing a file door lets through.
        settings = make_settings(fake.base_url, SPACE_ID="someone/switchboard", CHATBOT_DB=str(folder / "chats.db"),
                                 CHATBOT_RATE_LIMIT="none", CHATBOT_TOKEN_LIMIT="none",
                                 CHATBOT_STREAMS_PER_VISITOR="0")
        assert settings.public
        if assembly == "mounted":
            server = switchboard.serve_in_thread(switchboard.build_server(settings))
            self.url, self.stop = server.url, server.stop
        else:  # bound on loopback: the settings say public, the test stays on this machine
            demo = switchboard.launch(switchboard.build(settings), settings, server_name="127.0.0.1",
                                      server_port=free_port(), prevent_thread_lock=True, quiet=True)
            self.url, self.stop = demo.local_url, demo.close
        secret_file = folder / "data" / "browser-secret"
        environ = Path("/proc/self/environ").read_bytes().split(b"\0")
        self.canaries = [self.canary, max((e.decode(errors="replace") for e in environ), key=len)[:80]]
        if secret_file.is_file():
            self.canaries.append(secret_file.read_text().strip())
        self.targets = [folder / "secret.txt", folder / ".env", secret_file, Path("/proc/self/environ")]
        self.config = httpx.get(f"{self.url}config", timeout=30).json()
        self.components = {c["id"]: c for c in self.config["components"]}
        self.started = time.time()

    def leaks(self, text: str) -> list[str]:
        return [c for c in self.canaries if c and c in text]

    def call(self, client: httpx.Client, session: str, dependency: dict, data: Any) -> list[dict]:
        """One call of ``dependency`` as a browser or script would make it (the queue for queued events,
        ``/run/predict`` for the others); the messages it got back (or the refusal)."""
        body = {"data": data, "fn_index": dependency["id"], "session_hash": session, "event_data": None,
                "trigger_id": None}
        if not dependency.get("queue", True):
            answer = client.post(f"{self.url}gradio_api/run/predict", json=body)
            return [{"msg": "predict", "status": answer.status_code, "body": answer.text}]
        joined = client.post(f"{self.url}gradio_api/queue/join", json=body)
        if joined.status_code != 200:
            return [{"msg": "refused", "status": joined.status_code, "body": joined.text}]
        event_id = joined.json().get("event_id")
        messages: list[dict] = []
        with client.stream("GET", f"{self.url}gradio_api/queue/data", params={"session_hash": session}) as sse:
            for line in sse.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    messages.append(message)
                    if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                        break
                    if message.get("msg") == "close_stream":
                        break
        return messages

    def file_data(self, target: Path) -> dict[str, Any]:
        return {"path": str(target), "orig_name": "notes.txt", "meta": {"_type": "gradio.FileData"}}

    def payload(self, dependency: dict, everywhere: bool) -> list[Any]:
        """Inputs for ``dependency``: a FileData naming a secret in every input that can hold a file
        (``everywhere``: in every input, whatever its type)."""
        files = [self.file_data(t) for t in self.targets]
        history = [
            {"role": "user", "content": [*({"type": "file", "file": f} for f in files), {"type": "text", "text": "x"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ]
        store = {"version": 1, "current": "c1", "file": files[0],
                 "chats": [{"id": "c1", "title": "t", "created": 1, "updated": 1, "model": "fast",
                            "messages": history}]}
        natural = {
            "multimodaltextbox": {"text": "what does the attached file say?", "files": files},
            "chatbot": history, "state": history, "browserstate": store, "uploadbutton": files[0],
            "json": files, "file": files, "dropdown": "fast", "textbox": "", "radio": "c1",
        }
        values = []
        for i, component_id in enumerate(dependency["inputs"]):
            kind = self.components[component_id]["type"]
            if everywhere:
                values.append(files)
            elif kind == "api":  # the programmatic chat: (message, model, history, api key)
                values.append(["read the attached file", "fast", history, ""][i])
            else:
                values.append(natural.get(kind, files))
        return values

    def served(self, client: httpx.Client, found: Any) -> Iterator[tuple[str, str]]:
        """(where, body) of every file an output names, fetched as anyone could."""
        if isinstance(found, dict):
            for key, value in found.items():
                if key in ("path", "url") and isinstance(value, str) and value:
                    if value.startswith("http"):
                        if value.startswith(self.url):
                            yield value, client.get(value).text
                    else:
                        where = value if "/file=" in value else f"gradio_api/file={value}"
                        yield where, client.get(f"{self.url}{where.lstrip('/')}").text
                else:
                    yield from self.served(client, value)
        elif isinstance(found, list):
            for item in found:
                yield from self.served(client, item)

    def cache_leaks(self) -> list[str]:
        """Files in Gradio's cache written during the attack that hold a canary."""
        from gradio.utils import get_upload_folder

        leaked = []
        for root, _, names in os.walk(get_upload_folder()):
            for name in names:
                path = Path(root) / name
                try:
                    if path.stat().st_mtime >= self.started - 1 and self.leaks(path.read_bytes()[:1_000_000].decode(
                            errors="replace")):
                        leaked.append(str(path))
                except OSError:
                    continue
        return leaked


@pytest.fixture
def attack(fake: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Attack]:
    monkeypatch.chdir(tmp_path)  # the app's .env, data/ and blocked paths are this folder's
    running = Attack(fake, tmp_path)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def read_only_attack(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    """One attacked app for the module's tests that only fetch file routes (same settings for each): run
    from its folder, as ``attack`` is, for as long as the module runs."""
    folder = tmp_path_factory.mktemp("read-only-attack")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        running = Attack(fake_upstream, folder)
        yield running
        running.stop()


@pytest.fixture(params=["mounted", "launched"])
def any_attack(request: pytest.FixtureRequest, fake: FakeUpstream, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Attack]:
    """The attack on each assembly: ``python app.py``'s (mounted) and ``launch()``'s."""
    monkeypatch.chdir(tmp_path)
    running = Attack(fake, tmp_path, request.param)
    yield running
    running.stop()


@pytest.mark.slow  # every event of /config, many payloads, on both assemblies
def test_no_event_reads_or_serves_a_file_it_was_not_given(any_attack: Attack, fake: FakeUpstream) -> None:
    """Every event in /config, twice in one session (FileData for secret files in every input that can
    hold one, then in every input): no output, served file, cached copy or upstream request holds a secret."""
    attack = any_attack
    leaks = []
    with httpx.Client(timeout=60) as client:
        session = uuid.uuid4().hex
        for dependency in attack.config["dependencies"]:
            for everywhere in (False, True):
                messages = attack.call(client, session, dependency, attack.payload(dependency, everywhere))
                name = f"{dependency['id']}:{dependency.get('api_name')}"
                assert _ended(messages), (name, messages[-1:])  # every call was heard and answered
                leaks += [(name, "output", c) for c in attack.leaks(json.dumps(messages))]
                for where, body in attack.served(client, messages):
                    leaks += [(name, where, c) for c in attack.leaks(body)]
    leaks += [("upstream", str(i), c) for i, r in enumerate(fake.requests) for c in attack.leaks(json.dumps(r.body))]
    leaks += [("cache", path, "") for path in attack.cache_leaks()]
    assert not leaks, sorted({(event, "served" if "file=" in where else where) for event, where, _ in leaks})


@pytest.mark.parametrize("where", ["secret.txt", ".env", "data/browser-secret", "/proc/self/environ",
                                   "/etc/passwd", switchboard.__file__])
def test_no_path_outside_the_upload_cache_is_served(read_only_attack: Attack, where: str) -> None:
    attack = read_only_attack
    path = where if where.startswith("/") else str(attack.folder / where)
    assert Path(path).is_file()
    for url in (f"{attack.url}gradio_api/file={path}", f"{attack.url}gradio_api/file={where}"):
        answer = httpx.get(url, timeout=30)
        assert answer.status_code == 403, url
        assert not attack.leaks(answer.text)


JUNK: list[Any] = [
    None,
    42,
    "x" * 300_000,
    {"text": None, "files": None},
    {"text": 5, "files": [None, 3, {"path": 7, "meta": {"_type": "gradio.FileData"}}, {"path": None}]},
    [[[[{"role": None, "content": {"type": "file"}}]]]],
    [{"role": "user", "content": None}, {"role": "assistant"}, 7, None],
    {"version": "x", "chats": "y", "current": []},
]


def _ended(messages: list[dict]) -> bool:
    """Whether a call got an answer: a finished event (a result or an error), a 4xx refusal, or Gradio's
    error payload from ``/run/predict``."""
    last = messages[-1] if messages else {}
    if last.get("msg") == "process_completed":
        return "success" in last
    status = last.get("status", 0)
    if last.get("msg") == "predict" and status == 500:
        return "error" in json.loads(last["body"])
    return 200 <= status < 500


@pytest.mark.slow  # every event of /config, many payloads, on both assemblies
def test_malformed_payloads_get_an_error_never_a_traceback(
    any_attack: Attack, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Every event, sent nulls, wrong types, wrong arity, huge strings and nested junk (and bodies whose
    data is not a list): each call ends with an answer, the log holds no traceback, and no call writes
    more than one line to it."""
    attack = any_attack
    caplog.set_level(logging.INFO)
    unanswered, chatty = [], []
    errors: set[str | None] = set()
    with httpx.Client(timeout=60) as client:
        for dependency in attack.config["dependencies"]:
            arity = len(dependency["inputs"])
            payloads = [[junk] * arity for junk in JUNK] + [[], [None] * (arity + 3), None, "junk", {"a": 1}]
            payloads = list({json.dumps(data): data for data in payloads}.values())  # once each (no inputs: 5)
            session = uuid.uuid4().hex
            for data in payloads:
                before = len(caplog.records)
                messages = attack.call(client, session, dependency, data)
                if not _ended(messages):
                    unanswered.append((dependency["id"], str(data)[:40], messages[-1:]))
                last = messages[-1] if messages else {}
                if last.get("msg") == "process_completed" and not last.get("success"):
                    errors.add((last.get("output") or {}).get("error"))
                lines = [r for r in caplog.records[before:] if r.levelno >= logging.WARNING]
                if len(lines) > 1:
                    chatty.append((dependency["id"], str(data)[:40], [r.getMessage() for r in lines]))
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
    assert not unanswered
    assert not chatty
    assert errors == {render("bad_event")}  # what a failed event tells its caller


def _dependency(attack: Attack, api_name: str) -> dict:
    return next(d for d in attack.config["dependencies"] if d.get("api_name") == api_name)


def _upload(attack: Attack, client: httpx.Client, name: str, content: str) -> str:
    """A file uploaded through Gradio's upload route, as the message box does; its path on the server."""
    answer = client.post(f"{attack.url}gradio_api/upload", files=[("files", (name, content.encode()))])
    answer.raise_for_status()
    return answer.json()[0]


def _say(attack: Attack, client: httpx.Client, session: str, text: str, *paths: str) -> str:
    """One message through the chat box's event (with files named by path); what the session was shown."""
    files = [{"path": p, "orig_name": os.path.basename(p), "meta": {"_type": "gradio.FileData"}} for p in paths]
    messages = attack.call(client, session, _dependency(attack, "respond"),
                           [{"text": text, "files": files}, None, "fast", "", None, None, "", None, None])
    return json.dumps(messages)


def test_an_attachment_is_read_only_for_the_session_that_uploaded_it(attack: Attack, fake: FakeUpstream) -> None:
    """Inside Gradio's upload folder, too: another visitor naming your upload, or anyone naming a file
    Gradio's upload route did not write, gets a refusal and the model sees nothing of the file."""
    from gradio.utils import get_upload_folder

    owner, other = uuid.uuid4().hex, uuid.uuid4().hex
    planted = Path(get_upload_folder()) / secrets.token_hex(16) / "planted.txt"  # as a copy Gradio made
    planted.parent.mkdir(parents=True)
    planted.write_text(f"planted {attack.canary}-planted")
    with httpx.Client(timeout=60) as client:
        mine = _upload(attack, client, "notes.txt", f"my notes {attack.canary}-upload")
        assert "cannot be read here" not in _say(attack, client, owner, "read it", mine)
        assert f"{attack.canary}-upload" in json.dumps(fake.last.body)  # the uploader's own file goes up
        sent = len(fake.requests)
        assert "cannot be read here" in _say(attack, client, other, "read theirs", mine)
        assert "cannot be read here" in _say(attack, client, owner, "read this", str(planted))
        assert "cannot be read here" in _say(attack, client, other, "read this", str(planted))
    assert len(fake.requests) == sent  # nothing was sent for the refused ones
    assert not [r for r in fake.requests if f"{attack.canary}-planted" in json.dumps(r.body)]


def test_a_saved_chats_attachment_needs_the_apps_seal(attack: Attack, fake: FakeUpstream) -> None:
    """A saved chat brings its attachments back in a new page (the app sealed them when it saved the
    chat); a store from the browser that names a path the app did not seal is never followed."""
    owner, later, forger = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    with httpx.Client(timeout=60) as client:
        mine = _upload(attack, client, "notes.txt", f"my notes {attack.canary}-upload")
        _say(attack, client, owner, "read it", mine)
        after_reply = _dependency(attack, "saved")  # the saved chat, then the steps folded into its request
        payload = [None, None, "fast", ""] + [None] * (len(after_reply["inputs"]) - 4)
        saved = attack.call(client, owner, after_reply, payload)
        store = saved[-1]["output"]["data"][0]
        part = store["chats"][0]["messages"][0]["content"][0]
        assert part["type"] == "file" and part["file"]["path"] == mine and part["file"]["seal"]
        # The forger knows the path (not the file: the fake upstream echoes it, so no reply goes along).
        forged = {"version": 1, "current": "c1", "chats": [{"id": "c1", "title": "t", "messages": [
            {"role": "user", "content": [{"type": "file", "file": {"path": mine, "orig_name": "n.txt", "seal": seal}},
                                         {"type": "text", "text": "read it"}]}
            for seal in ("0" * 64, None, part["file"]["seal"][::-1])]}]}

        restored = attack.call(client, later, _dependency(attack, "restore"), [store, "fast"])
        assert mine in json.dumps(restored[-1]["output"]["data"][VIEW])  # the chat shows the attachment
        _say(attack, client, later, "and again?")
        assert f"{attack.canary}-upload" in json.dumps(fake.last.body)  # and the model sees it

        restored = attack.call(client, forger, _dependency(attack, "restore"), [forged, "fast"])
        assert mine not in json.dumps(restored[-1]["output"]["data"])
        sent = len(fake.requests)
        _say(attack, client, forger, "and again?")
        assert len(fake.requests) == sent + 1 and f"{attack.canary}-upload" not in json.dumps(fake.last.body)
        assert "cannot be read here" in _say(attack, client, forger, "read it", mine)
