"""Issue 12.4: 295 requests of 200,000 characters refused by a 5/minute limit: rows and bytes they add to the database.

Run: python -m bench.probes.refused_rows"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import os
import sqlite3
import tempfile
import time

import httpx
from conftest import make_settings
from fake_upstream import FakeUpstream

import app as switchboard

with FakeUpstream() as fake, tempfile.TemporaryDirectory() as tmp:
    db = os.path.join(tmp, "s.db")
    settings = make_settings(fake.base_url, CHATBOT_DB=db, CHATBOT_RATE_LIMIT="5/minute")
    with switchboard.serve_in_thread(switchboard.build_server(settings)) as running:
        url = running.url
        with httpx.Client(timeout=30) as c:
            for i in range(5):
                c.post(url + "chat", json={"message": "hi"})
            def count():
                with sqlite3.connect(db) as conn:
                    return conn.execute("select count(*) from messages").fetchone()[0]
            rows0, size0 = count(), os.path.getsize(db) + (os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0)
            t = time.perf_counter(); statuses = {}
            for i in range(295):
                r = c.post(url + ("chat" if i % 2 else "chat/stream"), json={"message": "x" * 200_000})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            dt = time.perf_counter() - t
            rows1, size1 = count(), os.path.getsize(db) + (os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0)
    print(f"295 refused requests (200,000 chars each, /chat and /chat/stream): statuses {statuses}, rows +{rows1 - rows0}, db+wal +{(size1 - size0) / 1e6:.1f} MB, {dt:.1f} s, upstream calls {len(fake.requests)}")
