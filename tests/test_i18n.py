"""Languages: every string in English, Spanish and Portuguese with the same placeholders; the visitor's
language picked from Accept-Language; friendly errors rendered in it."""

from __future__ import annotations

import pytest

from chatbot.core.error_kinds import KINDS, NOTES
from chatbot.core.errors import MESSAGES, Friendly, friendly, render
from chatbot.core.i18n import LANGUAGES, TEXTS, duration, pick_language, placeholders, text
from chatbot.web.labels import UI, gradio_i18n


@pytest.mark.parametrize("table", [UI, TEXTS], ids=["ui", "texts"])
def test_every_key_in_every_language_with_the_same_placeholders(table: dict[str, dict[str, str]]) -> None:
    assert set(table) == set(LANGUAGES)
    for lang in LANGUAGES:
        assert set(table[lang]) == set(table["en"]), lang
        for key, template in table[lang].items():
            assert template.strip(), (lang, key)
            assert placeholders(template) == placeholders(table["en"][key]), (lang, key)


@pytest.mark.parametrize("lang", ["es", "pt"])
def test_every_friendly_error_in_spanish_and_portuguese(lang: str) -> None:
    """The error table: every kind (and every note) has its message in all three languages, translated, with
    the English placeholders."""
    tables = {**{kind: entry.messages for kind, entry in KINDS.items()}, **NOTES}
    assert set(tables) == set(MESSAGES)
    for kind, messages in tables.items():
        assert set(messages) == set(LANGUAGES), kind
        english, translated = messages["en"], messages[lang]
        assert english == MESSAGES[kind] and english.strip(), kind
        assert translated.strip() and translated != english, kind
        assert placeholders(translated) == placeholders(english), kind


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "en"),
        ("", "en"),
        ("es-ES,es;q=0.9,en;q=0.8", "es"),
        ("pt-BR", "pt"),
        ("en-US,en;q=0.9,pt;q=0.8", "en"),
        ("fr-FR,fr;q=0.9,es;q=0.5", "es"),
        ("de, pt;q=0.2, es;q=0.4", "es"),
        ("es;q=0, pt", "pt"),
        ("*", "en"),
        ("garbage;;;q=x, \x00", "en"),
        ("x" * 10_000, "en"),
    ],
)
def test_language_from_accept_language(header: str | None, lang: str) -> None:
    assert pick_language(header) == lang


def test_errors_render_in_the_visitors_language_and_english_stays_the_default() -> None:
    assert render("empty_message") == MESSAGES["empty_message"]
    assert render("empty_message", "es") == "Escribe un mensaje primero."
    assert render("empty_message", "pt") == "Digite uma mensagem primeiro."
    assert render("empty_message", "fr") == MESSAGES["empty_message"]
    error = friendly("rate_limited", retry_after=600, status=429, wait=600.0)
    assert error.text == render("rate_limited", wait=600.0) and "10 minutes" in error.text
    assert "10 minutos" in error.localized("es") and "10 minutos" in error.localized("pt")
    assert error.localized("en") == error.text


def test_a_friendly_error_built_without_parameters_keeps_its_english() -> None:
    legacy = Friendly("rate_limited", "The provider is rate limiting requests. Try again in 5 seconds.")
    assert legacy.localized("es") == legacy.text
    assert Friendly("auth", render("auth")).localized("pt").startswith("O provedor recusou")


def test_durations_in_words() -> None:
    assert duration(1) == "1 second" and duration(42) == "42 seconds"
    assert duration(600, "es") == "10 minutos" and duration(1, "pt") == "1 segundo"
    assert duration(3 * 3600 * 24, "es").endswith("horas")


def test_server_strings_fall_back_to_english() -> None:
    assert text("thinking", "es") == "Pensando"
    assert text("thinking", "xx") == "Thinking"
    assert text("usage_line", "pt", prompt=1234, completion=5, price="$0.01") == (
        "1.234 tokens de entrada · 5 de saída · $0.01"
    )


def test_gradio_i18n_carries_the_three_languages() -> None:
    translations = gradio_i18n().translations_dict
    assert set(translations) == {"en", "es", "pt"}
    assert translations["es"]["new_chat"] == "Nuevo chat"


def test_numbers_are_written_the_way_the_language_writes_them() -> None:
    """es and pt group thousands with "." and write decimals with ","; English keeps "6,144" (issue 15, item 8)."""
    gauge = {"used": 6144, "budget": 1_000_000, "percent": "1%"}
    assert text("gauge", "en", **gauge) == "Context: 6,144 of 1,000,000 tokens (1%)"
    assert text("gauge", "es", **gauge) == "Contexto: 6.144 de 1.000.000 tokens (1%)"
    assert text("gauge", "pt", **gauge) == "Contexto: 6.144 de 1.000.000 tokens (1%)"
    assert render("first_token_timeout", "es", seconds=1.5).startswith("El modelo no envió nada durante 1,5 segundos")
    assert render("message_too_long", "pt", model="m", tokens=12345, budget=8000).count("12.345") == 1
    assert render("first_token_timeout", seconds=1.5).startswith("The model sent nothing for 1.5 seconds")


def test_the_page_translates_gradios_own_status_words() -> None:
    """Gradio's status tracker says ``common.complete``, a key its own es/pt/en tables lack (it leaked raw)."""
    for lang in LANGUAGES:
        assert UI[lang]["common.complete"] and UI[lang]["message_label"] and UI[lang]["welcome"]
