"""A patched copy of Switchboard, for before/after measurements of the fixes proposed in the benchmark
report. It is NOT part of the app: it copies the repository's app.py and chatbot/ to a temporary
directory, edits chatbot/ui.py there (uiskip), imports that copy and monkeypatches it. Run it through the
benchmark, from the repository root:

    python -m bench --app-script docs/benchmarks/preview/patched_app.py --out /tmp/after

BENCH_PATCH (comma-separated, default all) selects the patches:

- nodelay:  app._bind creates the listening socket with proto=IPPROTO_TCP, so asyncio sets TCP_NODELAY on
            every accepted connection (otherwise Nagle + the client's delayed ACK hold small SSE writes ~40 ms).
- rawsse:   Upstream._read reads the upstream's SSE lines and json.loads them instead of letting the openai
            SDK build a model object per chunk (~90 us -> ~12 us per chunk); request, retries and status
            errors stay the SDK's (with_streaming_response).
- notransform: (with rawsse) the messages are passed as extra_body={"messages": ...} so the SDK does not
            walk them through async_maybe_transform on the event loop (437 ms -> 9 ms per request at 2,000
            turns, measured client-side).
- adaptive: chatbot.ui.coalesce spaces updates by max(UPDATE_INTERVAL, active_streams / BENCH_UPDATE_BUDGET):
            a budget of Gradio updates per second for the whole process (default 400).
- sessions: closed browser sessions (heartbeat gone) are dropped from Gradio's StateHolder after
            BENCH_SESSION_GRACE s (default 30) instead of Gradio's 1 hour / 10,000-session LRU (~120 KB each
            here), with the session's message queue and event analytics Gradio keeps.
- uiskip:   the ChatInterface function yields only the chatbot and two States while streaming; the session
            line (Markdown) and gauge (HTML) are set once, by finished.change. Gradio re-instantiates a
            component and rebuilds its per-session config for every gr.skip() sent to a component output.
"""
import asyncio, datetime, json, os, shutil, socket, sys, tempfile, time

REPO = os.environ.get("BENCH_REPO", os.getcwd())
PATCHES = set(filter(None, os.environ.get(
    "BENCH_PATCH", "nodelay,rawsse,notransform,adaptive,sessions,uiskip").split(",")))

UI_EDITS = [
    ("                    yield update, gr.skip(), gr.skip(), gr.skip(), gr.skip()\n",
     "                    yield update, gr.skip(), gr.skip()\n"),
    ("                yield update, *after\n",
     "                if isinstance(after[3], dict):\n"
     "                    yield update, after[0], {**after[3], \"session_line\": after[1], \"gauge\": after[2]}\n"
     "                else:\n"
     "                    yield update, gr.skip(), gr.skip()\n"),
    ("                additional_outputs=[totals, session, gauge, finished],\n",
     "                additional_outputs=[totals, finished],\n"),
    ("            session.render()\n",
     "            session.render()\n"
     "            finished.change(lambda f: (f.get(\"session_line\"), f.get(\"gauge\"))\n"
     "                            if isinstance(f, dict) and \"gauge\" in f else (gr.skip(), gr.skip()),\n"
     "                            finished, [session, gauge], api_visibility=\"private\", show_progress=\"hidden\")\n"),
]

if "uiskip" in PATCHES:
    copy = tempfile.mkdtemp(prefix="switchboard-patched-")
    shutil.copy(os.path.join(REPO, "app.py"), copy)
    shutil.copytree(os.path.join(REPO, "chatbot"), os.path.join(copy, "chatbot"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    path = os.path.join(copy, "chatbot", "ui.py")
    text = open(path, encoding="utf-8").read()
    for old, new in UI_EDITS:
        if text.count(old) != 1:
            sys.exit(f"patched_app: chatbot/ui.py changed, the uiskip edit no longer applies: {old.strip()!r}")
        text = text.replace(old, new)
    open(path, "w", encoding="utf-8").write(text)
    REPO = copy
    import atexit
    atexit.register(shutil.rmtree, copy, True)
sys.path.insert(0, REPO)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import httpx2
import openai
import app as A
import chatbot.ui as U
import chatbot.upstream as UP
from chatbot.upstream import Idle, Done

BUDGET = float(os.environ.get("BENCH_UPDATE_BUDGET", "400"))
GRACE = float(os.environ.get("BENCH_SESSION_GRACE", "30"))


def _bind(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class _Obj:
    """Attribute view of a decoded chunk, enough for chatbot.upstream._events/_usage."""
    __slots__ = ("_d",)

    def __init__(self, d):
        self._d = d

    def __getattr__(self, name):
        if name == "model_extra":
            return self._d
        v = self._d.get(name)
        if isinstance(v, dict):
            return _Obj(v)
        if isinstance(v, list):
            return [_Obj(x) if isinstance(x, dict) else x for x in v]
        return v


async def _read_raw(self, client, prepared, queue):
    model = prepared.model
    cap = {"max_completion_tokens" if model.reasoning else "max_tokens": prepared.max_tokens}
    try:
        # notransform: the messages go in extra_body, which the SDK sends as they are, instead of through
        # async_maybe_transform (a TypedDict walk of every message on the event loop: ~110 us a message).
        messages = {"messages": [], "extra_body": {"messages": prepared.messages}} if "notransform" in PATCHES \
            else {"messages": prepared.messages}
        async with client.chat.completions.with_streaming_response.create(
            model=model.id, stream=True, stream_options={"include_usage": True}, **messages, **cap,
        ) as response:
            splitter = UP.ThinkSplitter()
            finish = None
            try:
                async for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    obj = json.loads(data)
                    if isinstance(obj, dict) and obj.get("error") is not None:
                        err = obj["error"]
                        message = err.get("message") if isinstance(err, dict) else str(err)
                        raise openai.APIError(message or "upstream error", response.http_response.request, body=err)
                    for event in UP._events(_Obj(obj), splitter, model):
                        if isinstance(event, Done):
                            finish = event.finish_reason
                        else:
                            queue.put_nowait(event)
            except httpx2.TransportError as exc:
                raise openai.APIConnectionError(request=response.http_response.request) from exc
            for event in splitter.flush():
                queue.put_nowait(event)
        queue.put_nowait(Done(finish))
        queue.put_nowait(UP._END)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        queue.put_nowait(exc)


_active = 0


async def coalesce(events, view):
    global _active
    _active += 1
    try:
        last = 0.0
        dirty = False
        async for event in events:
            if view.apply(event):
                dirty = True
            now = time.monotonic()
            interval = max(U.UPDATE_INTERVAL, _active / BUDGET)
            if dirty and now - last >= interval:
                last, dirty = now, False
                yield view
            elif isinstance(event, Idle) and now - last >= U.KEEPALIVE_INTERVAL:
                last = now
                yield view
        if dirty or last == 0.0:
            yield view
    finally:
        _active -= 1


_demo = {}
_orig_build = A.build


def build(*a, **k):
    demo = _orig_build(*a, **k)
    _demo["demo"] = demo
    return demo


async def _purge_loop():
    while True:
        await asyncio.sleep(5)
        demo = _demo.get("demo")
        holder = getattr(demo, "state_holder", None)
        if holder is None:
            continue
        cutoff = datetime.datetime.now() - datetime.timedelta(seconds=GRACE)
        pending = demo._queue.pending_event_ids_session
        purged = set()
        for sid in [s for s, st in list(holder.session_data.items()) if st.is_closed]:
            if holder.time_last_used.get(sid, cutoff) <= cutoff and not pending.get(sid):
                holder.session_data.pop(sid, None)
                holder.time_last_used.pop(sid, None)
                purged.add(sid)
        # Gradio's own per-session leftovers: the session's message queue (kept after its stream ended)
        # and per-event analytics (kept even with monitoring off).
        q = demo._queue
        for sid in list(q.pending_messages_per_session):
            if sid not in holder.session_data and not pending.get(sid) and q.pending_messages_per_session[sid].empty():
                q.pending_messages_per_session.pop(sid, None)
                q.pending_event_ids_session.pop(sid, None)
        analytics = getattr(q, "event_analytics", None)
        if analytics:
            for eid in [e for e, a in list(analytics.items()) if a.get("session_hash") not in holder.session_data
                        and a.get("status") not in ("queued", "processing")]:
                analytics.pop(eid, None)


_orig_build_server = A.build_server


def build_server(*a, **k):
    inner = _orig_build_server(*a, **k)
    started = []

    async def app(scope, receive, send):
        if not started and scope["type"] in ("http", "websocket") and "sessions" in PATCHES:
            started.append(asyncio.get_running_loop().create_task(_purge_loop()))
        if scope["type"] == "http" and scope["path"] == "/_bench/debug":
            import gc
            demo = _demo.get("demo")
            holder = demo.state_holder
            q = demo._queue
            info = {"sessions": len(holder.session_data),
                    "closed": sum(1 for s in holder.session_data.values() if s.is_closed),
                    "time_last_used": len(holder.time_last_used),
                    "pending_messages_per_session": len(q.pending_messages_per_session),
                    "pending_event_ids_session": len(q.pending_event_ids_session),
                    "event_ids_to_events": len(q.event_ids_to_events),
                    "event_analytics": len(getattr(q, "event_analytics", {}) or {}),
                    "iterators": len(getattr(demo, "iterators", {}) or {}),
                    "gc_objects": len(gc.get_objects())}
            if os.environ.get("BENCH_TRACEMALLOC"):
                import tracemalloc
                snap = tracemalloc.take_snapshot()
                info["top"] = [str(x) for x in snap.statistics("lineno")[:25]]
            body = json.dumps(info).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await inner(scope, receive, send)

    return app


if "nodelay" in PATCHES:
    A._bind = _bind
if "rawsse" in PATCHES:
    UP.Upstream._read = _read_raw
import inspect  # noqa: E402

if "adaptive" in PATCHES and "pacer" not in inspect.signature(U.coalesce).parameters:
    U.coalesce = coalesce  # (chatbot/ui.py now has its own Pacer: then this patch is not applied)
else:
    PATCHES.discard("adaptive")
_orig_mount = A.gr.mount_gradio_app


def mount_gradio_app(app, blocks, *a, **k):
    _demo["demo"] = blocks
    return _orig_mount(app, blocks, *a, **k)


A.gr.mount_gradio_app = mount_gradio_app  # also serves /_bench/debug (session counts)
A.build_server = build_server
if os.environ.get("BENCH_TRACEMALLOC"):
    import tracemalloc
    tracemalloc.start(1)
print(f"patched: {sorted(PATCHES)} budget {BUDGET}", flush=True)
A.main()
