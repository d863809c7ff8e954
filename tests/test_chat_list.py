"""The chat list as a visitor reads it (chatbot/web/chat_list.py): plain-text titles, search by title,
chats grouped by age."""

from __future__ import annotations

import pytest

from chatbot.web import chats
from chatbot.web.chat_list import grouped, plain_title


@pytest.mark.parametrize(("text", "title"), [
    ("# **Bold** _title_ with `code`\nsecond line", "Bold title with code"),
    ("```python\nprint(1)\n```", "print(1)"),
    ("\n\n  > quoted [a link](https://x.example) and ![img](y.png)  ", "quoted a link and img"),
    ("- [ ] a *task* ~~done~~", "a task done"),
    ("1. <b>first</b> step", "first step"),
    ("snake_case_name stays", "snake_case_name stays"),
    ("***", ""),
])
def test_titles_are_plain_text_from_the_first_line(text: str, title: str) -> None:
    assert plain_title(text) == title


def test_a_chat_title_never_carries_markdown_or_later_lines() -> None:
    store = chats.save(chats.empty_store(), [{"role": "user", "content": "## *Plan* a trip\nto Lima"}], None, None)
    assert chats.current(store)["title"] == "Plan a trip"
    assert chats.title_of([{"role": "user", "content": [{"type": "text", "text": "**"}]}]) == "New chat"


def test_chats_are_grouped_by_age_and_filtered_by_title() -> None:
    now = 1_000_000_000.0
    store = {"chats": [
        {"id": "a", "title": "Lima trip", "updated": now - 60},
        {"id": "b", "title": "Tax forms", "updated": now - 3 * 86_400},
        {"id": "c", "title": "Old LIMA notes", "updated": now - 30 * 86_400},
        {"id": "d", "title": "Lunch", "updated": now - 3_600},
    ]}
    assert grouped(store, now=now) == {
        "today": [("Lima trip", "a"), ("Lunch", "d")], "week": [("Tax forms", "b")], "older": [("Old LIMA notes", "c")],
    }
    lima = {"today": [("Lima trip", "a")], "week": [], "older": [("Old LIMA notes", "c")]}
    assert grouped(store, "lima", now=now) == lima
    assert grouped(store, "lima notes", now=now)["older"] == [("Old LIMA notes", "c")]
    assert grouped(store, "nothing", now=now) == {"today": [], "week": [], "older": []}
