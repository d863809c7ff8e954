"""Measure what a kill -9 mid-reply loses: run ``python tests/scripts/kill_mid_reply.py``.

Three runs of ``python app.py`` (SQLite) streaming a slow reply from the fake upstream, killed with SIGKILL
at a later point each time, then restarted on the same file: what the client had at the kill and a second
before, and what the restarted app stored."""

from __future__ import annotations

import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "tests"), ROOT]
os.chdir(ROOT)

from fake_upstream import FakeUpstream  # noqa: E402
from test_durability import SLOW, App, Reader, app_env  # noqa: E402


def main() -> None:
    with FakeUpstream() as fake, tempfile.TemporaryDirectory() as tmp:
        for run in range(3):
            app = App(app_env(fake, CHATBOT_DB=f"{tmp}/c{run}.db"))
            reader = Reader(app.url, SLOW)
            reader.wait_for(400 + 700 * run)
            time.sleep(1.5)
            at = time.monotonic()
            app.kill()
            reader.finished.wait(30)
            app.start()
            stored = app.reply(str(reader.cid))
            print(f"run {run}: client had {len(reader.text)} chars at the kill, "
                  f"{len(reader.received_before(at - 1))} a second before; stored {len(stored['content'])} "
                  f"chars, status {stored['status']}")
            app.stop()


if __name__ == "__main__":
    main()
