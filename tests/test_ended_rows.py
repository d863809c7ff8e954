"""The ended messages the SQLite store keeps between turns: bounded in conversations and characters, and
dropped when another connection writes to the file."""

from __future__ import annotations

from chatbot.core.ended_rows import EndedRows


def test_ended_rows_are_bounded() -> None:
    ended = EndedRows(max_conversations=2, max_chars=100)
    ended.check_version(1)
    rows = [(1, "user", "x" * 10, "complete"), (2, "assistant", "y" * 10, "complete"),
            (3, "user", "z", "complete"), (4, "assistant", "", "streaming"), (5, "user", "w", "complete")]
    ended.keep("a", None, rows)
    assert ended.known("a", 1, 6) == rows[:3]  # up to the reply still streaming
    assert ended.known("a", 2, 6) == rows[1:3]
    known = ended.known("a", 2, 6)
    ended.keep("a", known, [(4, "assistant", "done", "complete"), (5, "user", "w", "complete")])
    assert ended.known("a", 2, 6) == rows[1:3] + [(4, "assistant", "done", "complete"), (5, "user", "w", "complete")]
    assert ended.chars == 10 + 1 + 4 + 1
    assert ended.known("a", 1, 6) is None  # does not reach back far enough
    ended.keep("a", None, rows)
    ended.keep("b", None, rows[:2])
    ended.keep("c", None, rows[:2])
    assert len(ended) == 2 and ended.known("a", 1, 6) is None  # the least recently used went
    ended.keep("d", None, [(1, "user", "q" * 101, "complete")])
    assert ended.known("d", 1, 2) is None and ended.chars == 40
    ended.check_version(2)  # another connection wrote to the file
    assert len(ended) == 0 and ended.chars == 0
