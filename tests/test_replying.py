"""Which tabs have a reply in progress (chatbot/replying.py): marked, ended, expired, bounded."""

from __future__ import annotations

import time

from chatbot.replying import Replying


def test_a_mark_lasts_until_the_end_or_its_age() -> None:
    replying = Replying(max_age=0.2)
    assert not replying.busy("a") and not replying.busy(None)
    replying.mark("a")
    replying.mark(None)  # no session (an API call): nothing to mark
    assert replying.busy("a") and not replying.busy("b")
    replying.end("a")
    assert not replying.busy("a")
    replying.mark("a")
    time.sleep(0.3)
    assert not replying.busy("a")  # a reply whose save never came blocks nothing for long
    replying.mark("a")  # every update renews it
    assert replying.busy("a")


def test_at_most_max_sessions_are_kept_the_oldest_go_first() -> None:
    replying = Replying(max_sessions=3)
    for session in "abcd":
        replying.mark(session)
    replying.mark("b")
    replying.mark("e")
    assert [s for s in "abcde" if replying.busy(s)] == ["b", "d", "e"]
