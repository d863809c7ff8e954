"""The error table: one status and one code per kind, documented in README, spelt the same on every face.
Pure: no network."""

from __future__ import annotations

import re
from pathlib import Path

from chatbot.core.error_kinds import API_ONLY, API_STATUS, KINDS
from chatbot.core.errors import failure_text, friendly, render, status_for
from chatbot.core.events import ErrorEvent, TextDelta
from chatbot.http.problems import ApiError
from chatbot.http.sse import error_text
from chatbot.web.ui import ReplyView

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_codes() -> dict[str, int]:
    """code -> status from the error-code table in README's HTTP API section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## HTTP API"):]
    section = section[: section.index("\n## ", 1)]
    found: dict[str, int] = {}
    for status, codes in re.findall(r"^\| (\d{3}) \| (.+) \|$", section, re.MULTILINE):
        for code in re.findall(r"`([a-z_]+)`", codes):
            assert code not in found, f"{code} is listed twice in README"
            found[code] = int(status)
    return found


def test_readme_lists_every_api_code_with_its_status() -> None:
    assert readme_codes() == API_STATUS


def test_every_kind_has_an_error_status_and_a_code() -> None:
    for kind, entry in KINDS.items():
        assert 400 <= entry.status < 600 and entry.code, kind
        assert status_for(kind) == entry.status
    assert not set(API_ONLY) & set(KINDS)


def test_the_api_error_for_a_kind_reads_the_table() -> None:
    error = ApiError.of("input_too_long", render("input_too_long", chars=51, limit=50))
    assert (error.status, error.code) == (422, "input_too_long")
    assert ApiError.of("limit_capacity").status == 503 and ApiError.of("limit_capacity").message == render(
        "limit_capacity"
    )
    assert ApiError.of("unauthorized", "no token").status == 401


def test_the_cut_off_note_is_spelt_once_for_every_face() -> None:
    """The chat tab, gradio_client's /chat and the HTTP API put the same note before a cut reply's error."""
    cut = ErrorEvent(friendly("cut"), partial=True)
    expected = {lang: failure_text(cut.error, True, lang) for lang in ("en", "es", "pt")}
    assert expected["en"] == f"{render('cut_note')} {render('cut')}"
    assert expected["es"].startswith(render("cut_note", "es"))
    for lang, wording in expected.items():
        view = ReplyView(lang)
        view.apply(TextDelta("partial"))
        view.apply(cut)
        notice = view.messages()[-1]  # one notice: the whole message in its title, nothing repeated below
        assert notice["metadata"]["title"] == f"⚠️ {wording}" and notice["content"]["text"] == ""
        assert view.as_text() == f"partial\n\n⚠️ {wording}"
    assert error_text(cut) == expected["en"]
    whole = ErrorEvent(friendly("cut"), partial=False)
    assert error_text(whole) == render("cut") == failure_text(whole.error, False)
