"""Earlier answers kept when a question is answered again (chatbot/web/answers.py)."""

from __future__ import annotations

from chatbot.web.answers import NOTE_ID, keep_previous


def q(text: str) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def a(text: str, metadata: dict | None = None) -> dict:
    message = {"role": "assistant", "content": [{"type": "text", "text": text}]}
    return {**message, "metadata": metadata} if metadata else message


COST = {"title": "12 tokens", "status": "done", "id": "switchboard-cost"}


def test_a_retry_keeps_the_answer_it_replaces_each_time() -> None:
    saved = [q("one"), a("1"), q("two"), a("first try"), a("cost", COST)]
    again = keep_previous(saved, [q("one"), a("1"), q("two"), a("second try")], "es")
    assert again is not None and again[:3] == saved[:3] and again[-1] == a("second try")
    note = again[3]
    assert note["metadata"] == {"title": "↺ Respuesta anterior", "status": "done", "id": NOTE_ID}
    assert note["content"] == [{"type": "text", "text": "first try"}]
    third = keep_previous(again, [q("one"), a("1"), q("two"), a("third try")])
    assert [m["content"][0]["text"] for m in third[3:]] == ["first try", "second try", "third try"]


def test_nothing_is_kept_for_a_new_question_an_edit_an_undo_or_a_failure() -> None:
    saved = [q("one"), a("1")]
    assert keep_previous(saved, [q("one"), a("1"), q("two"), a("2")]) is None  # a new question
    assert keep_previous(saved, [q("uno"), a("one")]) is None  # an edited question
    assert keep_previous([*saved, q("two"), a("2")], saved) is None  # Undo of the last turn
    assert keep_previous(saved, saved) is None  # the same save again
    assert keep_previous([q("one"), a("⚠️ failed", {"title": "⚠️", "id": "switchboard-note"})],
                         [q("one"), a("1")]) is None  # the earlier attempt had no answer
    assert keep_previous(None, saved) is None and keep_previous(saved, []) is None
