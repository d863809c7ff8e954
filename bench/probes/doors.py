"""Issues 12.5-12.7: two API tokens against CHATBOT_RATE_LIMIT=5/minute, anonymous API calls behind a login,
and the login throttle against a guesser.

Run: python -m bench.probes.doors"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import tempfile

import httpx
from conftest import make_settings
from fake_upstream import FakeUpstream

import app as switchboard

A, B = "token-a-0123456789abcdefghij", "token-b-0123456789abcdefghij"
with FakeUpstream() as fake:
    s = make_settings(fake.base_url, CHATBOT_API_TOKENS=f"{A},{B}", CHATBOT_RATE_LIMIT="5/minute",
                      CHATBOT_SIGNED_IN_RATE_LIMIT="20/minute", CHATBOT_DB=str(Path(tempfile.mkdtemp()) / "m1.db"))
    with switchboard.serve_in_thread(switchboard.build_server(s)) as srv:
        ok = {t: sum(httpx.post(srv.url + "chat", json={"message": "hi"}, headers={"Authorization": f"Bearer {t}"}, timeout=30).status_code == 200 for _ in range(25)) for t in (A, B)}
        print("item5: 25 POST /chat per token, CHATBOT_RATE_LIMIT=5/minute: replies", list(ok.values()), "upstream calls", len(fake.requests))
    fake.reset()
    s = make_settings(fake.base_url, CHATBOT_AUTH="alice:alice-right-pass", CHATBOT_TRUSTED_PROXIES="1", CHATBOT_DB=str(Path(tempfile.mkdtemp()) / "m2.db"))
    with switchboard.serve_in_thread(switchboard.build_server(s)) as srv:
        print("item6: anonymous POST /chat", httpx.post(srv.url + "chat", json={"message": "hi"}, timeout=30).status_code,
              "GET /models", httpx.get(srv.url + "models", timeout=30).status_code,
              "GET /models as alice (Basic)", httpx.get(srv.url + "models", auth=("alice", "alice-right-pass"), timeout=30).status_code)
        def login(u, p, c):
            return httpx.post(srv.url + "login", data={"username": u, "password": p}, headers={"X-Forwarded-For": c}, timeout=10).status_code
        wrong = [login("alice", f"g{i}", "203.0.113.66") for i in range(40)]
        print("item7: 40 wrong for alice from 203.0.113.66:", wrong.count(400), "x400; then alice right from 198.51.100.7:", login("alice", "alice-right-pass", "198.51.100.7"),
              "from 203.0.113.66:", login("alice", "alice-right-pass", "203.0.113.66"))
        made = [login(f"made-up-{i%6}", f"g{i}", "203.0.113.77") for i in range(30)]
        print("item7: 30 wrong over 6 made-up names from 203.0.113.77, then alice right from 192.0.2.9:", login("alice", "alice-right-pass", "192.0.2.9"))
