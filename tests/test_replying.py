"""Which tabs have a reply in progress (chatbot/web/replying.py): marked, ended, expired, bounded."""

from __future__ import annotations

import threading
import time

from chatbot.web.replying import Replying


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


def test_a_tabs_turns_run_one_at_a_time_and_nest() -> None:
    replying = Replying()
    order: list[str] = []

    def later(session: str, label: str) -> None:
        with replying.turn(session):
            order.append(label)

    with replying.turn("a"):
        with replying.turn("a"):  # a handler calling another
            order.append("nested")
        same = threading.Thread(target=later, args=("a", "same tab"))
        other = threading.Thread(target=later, args=("b", "other tab"))
        same.start()
        other.start()
        other.join(5)
        same.join(0.2)  # it waits for the turn
        order.append("first done")
    same.join(5)
    assert order == ["nested", "other tab", "first done", "same tab"]
