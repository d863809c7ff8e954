"""Languages: English (the default), Spanish and Portuguese (Brazilian), chosen from the browser's language.

:data:`TEXTS` is what the server writes into the chat and the side panels as a reply streams (the thinking
  block's title, the cost line, the session total, the context gauge, the saved-chat messages), rendered
  with :func:`text` in the language of the visitor's ``Accept-Language`` (:func:`pick_language`).

The friendly error messages live with their kind, in all three languages, in :mod:`chatbot.core.error_kinds`.
The interface's fixed labels, which the browser translates, are the web face's
(:mod:`chatbot.web.labels`).
"""

from __future__ import annotations

import math
import re

LANGUAGES: tuple[str, ...] = ("en", "es", "pt")
DEFAULT_LANGUAGE = "en"

_TAG_RE = re.compile(r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


def pick_language(accept_language: str | None) -> str:
    """The best of :data:`LANGUAGES` for an ``Accept-Language`` header (English when none fits)."""
    if not isinstance(accept_language, str) or not accept_language.strip():
        return DEFAULT_LANGUAGE
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for position, item in enumerate(accept_language[:512].split(",")[:32]):
        match = _TAG_RE.match(item)
        if not match:
            continue
        primary = match.group(1).lower()
        try:
            q = float(match.group(2)) if match.group(2) is not None else 1.0
        except ValueError:
            continue
        q -= position * 1e-6  # equal weights: the earlier tag wins
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
        elif primary == "*" and q > best_q:
            best, best_q = DEFAULT_LANGUAGE, q
    return best


def language_of(request: object) -> str:
    """The visitor's language from a ``gr.Request`` (or anything with ``headers``); English without one."""
    headers = getattr(request, "headers", None)
    try:
        value = headers.get("accept-language") if headers is not None else None
    except Exception:
        value = None
    return pick_language(value)


# --- what the server writes, in the visitor's language ------------------------------------------------

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "thinking": "Thinking",
        "usage_line": "{prompt:,} tokens in · {completion:,} out · {price}",
        "price_unknown": "price unknown",
        "simulated": "simulated, no cost",
        "stopped": "Stopped",
        "cost_upstream": "Price as reported by the provider for this reply.",
        "cost_catalogue": "Estimated from the list prices of {model}: {input} in and {output} out per "
        "million tokens.",
        "cost_unknown": "No price is known for {model}, so this reply's cost is not counted.",
        "session_empty": "**This session**: no replies yet.",
        "session_total": "**This session**: {replies} {replies_word} · {prompt:,} tokens in · "
        "{completion:,} out · {price}",
        "session_unpriced": " (+ {count} with unknown price)",
        "reply_one": "reply",
        "reply_many": "replies",
        "gauge": "Context: {used:,} of {budget:,} tokens ({percent})",
        "gauge_over": "older turns will be left out",
        "gauge_model": "Window of {model}: {window:,} tokens; {reserve:,} kept free for the reply.",
        "untitled": "New chat",
        "no_chats": "No saved chats yet.",
        "imported": "Imported “{title}”.",
        "import_failed": "That file is not a conversation exported from Switchboard (JSON), so nothing was "
        "imported.",
        "reply_in_progress": "A reply is still coming in this chat. Wait for it to finish, or press Stop (■), "
        "then switch chats.",
        "attachment_missing": "📎 {name} (the attachment is no longer available)",
        "exported_by": "Exported from Switchboard",
        "you": "You",
        "assistant": "Assistant",
    },
    "es": {
        "thinking": "Pensando",
        "usage_line": "{prompt:,} tokens de entrada · {completion:,} de salida · {price}",
        "price_unknown": "precio desconocido",
        "simulated": "simulado, sin costo",
        "stopped": "Detenida",
        "cost_upstream": "Precio informado por el proveedor para esta respuesta.",
        "cost_catalogue": "Estimado con los precios de lista de {model}: {input} de entrada y {output} de "
        "salida por millón de tokens.",
        "cost_unknown": "No se conoce el precio de {model}, así que el costo de esta respuesta no se cuenta.",
        "session_empty": "**Esta sesión**: todavía no hay respuestas.",
        "session_total": "**Esta sesión**: {replies} {replies_word} · {prompt:,} tokens de entrada · "
        "{completion:,} de salida · {price}",
        "session_unpriced": " (+ {count} con precio desconocido)",
        "reply_one": "respuesta",
        "reply_many": "respuestas",
        "gauge": "Contexto: {used:,} de {budget:,} tokens ({percent})",
        "gauge_over": "se omitirán los turnos más antiguos",
        "gauge_model": "Ventana de {model}: {window:,} tokens; {reserve:,} reservados para la respuesta.",
        "untitled": "Nuevo chat",
        "no_chats": "Todavía no hay chats guardados.",
        "imported": "Se importó «{title}».",
        "import_failed": "Ese archivo no es una conversación exportada desde Switchboard (JSON), así que no "
        "se importó nada.",
        "reply_in_progress": "Todavía está llegando una respuesta en este chat. Espera a que termine, o pulsa "
        "Detener (■), y luego cambia de chat.",
        "attachment_missing": "📎 {name} (el adjunto ya no está disponible)",
        "exported_by": "Exportado desde Switchboard",
        "you": "Tú",
        "assistant": "Asistente",
    },
    "pt": {
        "thinking": "Pensando",
        "usage_line": "{prompt:,} tokens de entrada · {completion:,} de saída · {price}",
        "price_unknown": "preço desconhecido",
        "simulated": "simulado, sem custo",
        "stopped": "Interrompida",
        "cost_upstream": "Preço informado pelo provedor para esta resposta.",
        "cost_catalogue": "Estimado com os preços de tabela de {model}: {input} de entrada e {output} de "
        "saída por milhão de tokens.",
        "cost_unknown": "O preço de {model} é desconhecido, então o custo desta resposta não é contado.",
        "session_empty": "**Esta sessão**: ainda não há respostas.",
        "session_total": "**Esta sessão**: {replies} {replies_word} · {prompt:,} tokens de entrada · "
        "{completion:,} de saída · {price}",
        "session_unpriced": " (+ {count} com preço desconhecido)",
        "reply_one": "resposta",
        "reply_many": "respostas",
        "gauge": "Contexto: {used:,} de {budget:,} tokens ({percent})",
        "gauge_over": "os turnos mais antigos serão deixados de fora",
        "gauge_model": "Janela de {model}: {window:,} tokens; {reserve:,} reservados para a resposta.",
        "untitled": "Novo chat",
        "no_chats": "Ainda não há chats salvos.",
        "imported": "“{title}” foi importado.",
        "import_failed": "Esse arquivo não é uma conversa exportada do Switchboard (JSON), então nada foi "
        "importado.",
        "reply_in_progress": "Uma resposta ainda está chegando neste chat. Espere terminar, ou clique em "
        "Parar (■), e depois troque de chat.",
        "attachment_missing": "📎 {name} (o anexo não está mais disponível)",
        "exported_by": "Exportado do Switchboard",
        "you": "Você",
        "assistant": "Assistente",
    },
}




def text(key: str, lang: str = DEFAULT_LANGUAGE, **params: object) -> str:
    """A server-written string in ``lang`` (English when the language or the key is missing there), its
    numbers written the way ``lang`` writes them (see :func:`local_numbers`)."""
    table = TEXTS.get(lang) or TEXTS[DEFAULT_LANGUAGE]
    template = table.get(key) or TEXTS[DEFAULT_LANGUAGE][key]
    try:
        return template.format(**local_numbers(params, lang))
    except (KeyError, IndexError, ValueError):
        return TEXTS[DEFAULT_LANGUAGE][key].format(**params)


#: The languages that group thousands with "." and write decimals with "," (6.144; 1,5).
_COMMA_DECIMALS = frozenset({"es", "pt"})
_SWAP = str.maketrans({",": ".", ".": ","})


class LocalNumber:
    """A number that formats the way a language writes it: ``format(LocalNumber(6144, "es"), ",")`` is
    ``6.144``; English keeps ``6,144``. Any format spec a number takes works the same way."""

    __slots__ = ("lang", "value")

    def __init__(self, value: int | float, lang: str) -> None:
        self.value = value
        self.lang = lang

    def __format__(self, spec: str) -> str:
        written = format(self.value, spec)
        return written.translate(_SWAP) if self.lang in _COMMA_DECIMALS else written

    def __str__(self) -> str:
        return format(self, "")


def local_numbers(params: dict[str, object], lang: str) -> dict[str, object]:
    """``params`` with every number (not a bool) written the way ``lang`` writes numbers."""
    if lang not in _COMMA_DECIMALS:
        return params
    return {
        name: LocalNumber(value, lang) if isinstance(value, int | float) and not isinstance(value, bool) else value
        for name, value in params.items()
    }


_UNITS: dict[str, tuple[tuple[str, str], tuple[str, str], tuple[str, str]]] = {
    "en": (("second", "seconds"), ("minute", "minutes"), ("hour", "hours")),
    "es": (("segundo", "segundos"), ("minuto", "minutos"), ("hora", "horas")),
    "pt": (("segundo", "segundos"), ("minuto", "minutos"), ("hora", "horas")),
}


def duration(seconds: float, lang: str = DEFAULT_LANGUAGE) -> str:
    """A wait in words in ``lang``: '42 seconds', '10 minutos', '3 horas'."""
    units = _UNITS.get(lang, _UNITS[DEFAULT_LANGUAGE])
    amount = math.ceil(max(seconds, 0))
    unit = units[0]
    if amount >= 90:
        amount, unit = math.ceil(amount / 60), units[1]
        if amount >= 90:
            amount, unit = math.ceil(amount / 60), units[2]
    return f"{amount} {unit[0] if amount == 1 else unit[1]}"


def placeholders(template: str) -> set[str]:
    """The field names a ``str.format`` template uses (for the every-key-in-every-language test)."""
    import string

    return {name for _, name, _, _ in string.Formatter().parse(template) if name}

