"""Compare mode in the chat page, and gradio_client's ``/compare``: one message to 2-4 models, their replies
streamed side by side (:mod:`chatbot.core.compare`).

The panel (an accordion under the chat): a multi-select of models, a message box, Compare and Stop all, and
one column per model (they wrap, so a phone stacks them), each headed by its model and its live stats, with
its own Stop and a "Continue with this reply" button. Every update of the page carries every column's new
text (one yield per :class:`~chatbot.core.compare.Batch`, paced by the app's :class:`~chatbot.web.ui.Pacer`).
When every column has ended the compared turn goes into the chat (and its saved chat): the message, then
every column as a collapsed note (:mod:`chatbot.core.compared_turns`); comparing again, each column
continues with its own model's reply. Continuing with one reply turns that compared turn into an ordinary
one: the other columns stay as notes (kept in saved chats and exports, never sent upstream), the chosen
reply last, as the history, and the model picker on its model.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr

from chatbot.core.compare import Batch, Column, ColumnStats, Comparison, Summary, compare
from chatbot.core.compared_turns import compared_turn, note
from chatbot.core.errors import failure_text
from chatbot.core.history import History
from chatbot.core.i18n import DEFAULT_LANGUAGE, LANGUAGES, language_of
from chatbot.core.usage import format_usd
from chatbot.web.labels import UI, ui
from chatbot.web.ui import KEEPALIVE_INTERVAL, ChatUI
from chatbot.web.visitor_message import words

log = logging.getLogger("switchboard.ui")

#: Columns the page shows at most (the API may allow more: CHATBOT_COMPARE_MAX_COLUMNS).
PAGE_COLUMNS = 4

LABELS: dict[str, dict[str, str]] = {
    "en": {"compare": "Compare models", "compare_models": "Models to compare (2-4)", "compare_go": "Compare",
           "compare_stop_all": "Stop all", "compare_stop": "Stop", "compare_pick": "Continue with this reply",
           "compare_message": "One message for every model…"},
    "es": {"compare": "Comparar modelos", "compare_models": "Modelos a comparar (2-4)", "compare_go": "Comparar",
           "compare_stop_all": "Detener todo", "compare_stop": "Detener",
           "compare_pick": "Continuar con esta respuesta", "compare_message": "Un mensaje para todos los modelos…"},
    "pt": {"compare": "Comparar modelos", "compare_models": "Modelos para comparar (2-4)", "compare_go": "Comparar",
           "compare_stop_all": "Parar tudo", "compare_stop": "Parar", "compare_pick": "Continuar com esta resposta",
           "compare_message": "Uma mensagem para todos os modelos…"},
}
for _lang in LANGUAGES:  # the browser translates these labels, as the page's others (chatbot.web.labels)
    UI[_lang].update(LABELS[_lang])

#: What the server writes (same placeholders in every language: tests/test_compare.py checks).
TEXTS: dict[str, dict[str, str]] = {
    "en": {"first": "first token {s} s", "speed": "{r} tok/s", "tokens": "{i} in · {o} out", "stopped": "stopped",
           "summary": "**Fastest first token:** {first} · **Fastest stream:** {fast} · **Cheapest:** {cheap}",
           "cut": " · **Cut by length:** {cut}", "none": "—", "waiting": "…", "unchosen": "🔀 {model} (compared)"},
    "es": {"first": "primer token {s} s", "speed": "{r} tok/s", "tokens": "{i} entrada · {o} salida",
           "stopped": "detenido",
           "summary": "**Primer token más rápido:** {first} · **Flujo más rápido:** {fast} · **Más barato:** {cheap}",
           "cut": " · **Cortados por longitud:** {cut}", "none": "—", "waiting": "…",
           "unchosen": "🔀 {model} (comparado)"},
    "pt": {"first": "primeiro token {s} s", "speed": "{r} tok/s", "tokens": "{i} entrada · {o} saída",
           "stopped": "parado",
           "summary": "**Primeiro token mais rápido:** {first} · **Fluxo mais rápido:** {fast} · **Mais barato:** "
           "{cheap}",
           "cut": " · **Cortados por tamanho:** {cut}", "none": "—", "waiting": "…",
           "unchosen": "🔀 {model} (comparado)"},
}


def say(key: str, lang: str, **params: object) -> str:
    table = TEXTS.get(lang, TEXTS[DEFAULT_LANGUAGE])
    return table[key].format(**params)


def stats_line(stats: ColumnStats, lang: str = DEFAULT_LANGUAGE) -> str:
    """``model · first token 0.42 s · 55 tok/s · 120 in · 300 out · $0.0012`` (what is known so far)."""
    parts = [f"**{stats.model}**"]
    if stats.first_token is not None:
        parts.append(say("first", lang, s=f"{stats.first_token:.2f}"))
    if stats.tokens_per_second is not None:
        parts.append(say("speed", lang, r=f"{stats.tokens_per_second:.0f}"))
    parts.append(say("tokens", lang, i=stats.tokens_in if stats.tokens_in is not None else "?", o=stats.tokens_out))
    if stats.cost is not None:
        parts.append(format_usd(stats.cost))
    if stats.stopped:
        parts.append(say("stopped", lang))
    return " · ".join(parts)


def summary_line(summary: Summary, lang: str = DEFAULT_LANGUAGE) -> str:
    none = say("none", lang)
    line = say("summary", lang, first=summary.fastest_first_token or none, fast=summary.fastest_stream or none,
               cheap=summary.cheapest or none)
    return line + (say("cut", lang, cut=", ".join(summary.cut_by_length)) if summary.cut_by_length else "")


def column_body(column: Column, lang: str = DEFAULT_LANGUAGE) -> str:
    """A column's reply as Markdown: the thinking as a quote, the text, the failure."""
    state, parts = column.state, []
    if state.reasoning:
        parts.append("\n".join(f"> {line}" for line in "".join(state.reasoning).splitlines()))
    parts.append(state.reply or ("" if state.finished or column.stopped else say("waiting", lang)))
    if state.error is not None:
        parts.append(f"⚠️ {failure_text(state.error.error, state.error.partial, lang)}")
    return "\n\n".join(p for p in parts if p)


def as_json(comparison: Comparison, summary: Summary | None, lang: str = DEFAULT_LANGUAGE) -> dict[str, Any]:
    """``/compare``'s answer so far: every column's reply and stats, then the summary."""
    columns = []
    for column, stats in zip(comparison.columns, comparison.stats(), strict=True):
        state = column.state
        columns.append({
            "model": column.model, "reply": state.reply, "reasoning": "".join(state.reasoning),
            "error": failure_text(state.error.error, state.error.partial, lang) if state.error else None,
            "finish_reason": state.finish_reason, "stopped": stats.stopped,
            "first_token_seconds": stats.first_token, "tokens_per_second": stats.tokens_per_second,
            "tokens_in": stats.tokens_in, "tokens_out": stats.tokens_out, "cost": stats.cost,
            "cut_by_length": stats.cut_by_length,
        })
    out: dict[str, Any] = {"columns": columns}
    if summary is not None:
        out["summary"] = {"fastest_first_token": summary.fastest_first_token,
                          "fastest_stream": summary.fastest_stream, "cheapest": summary.cheapest,
                          "cut_by_length": list(summary.cut_by_length)}
    return out


async def paced(chat: ChatUI, comparison: Comparison) -> AsyncIterator[Batch]:
    """The compare's batches for a face: those that changed something, and an empty one at least every
    KEEPALIVE_INTERVAL (so Gradio notices a closed tab, which closes the compare)."""
    chat.pacer.active += 1
    last = 0.0
    try:
        async with contextlib.aclosing(comparison.batches()) as batches:
            async for batch in batches:
                now = time.monotonic()
                if batch.events or batch.summary is not None or now - last >= KEEPALIVE_INTERVAL:
                    last = now
                    yield batch
    finally:
        chat.pacer.active -= 1


def compare_api(chat: ChatUI) -> Callable[..., AsyncIterator[dict]]:
    """gradio_client's ``/compare``: its name, signature and docstring are what the API page shows."""

    async def compare_models(
        message: str, models: list[str], history: list[dict] | None = None, api_key: str = "",
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> AsyncIterator[dict]:
        """Send one message to 2-4 models at once (with an optional earlier history and your own API key); get
        every model's reply and stats as they stream (columns), then a summary and the history to send to keep
        comparing (each model continues with its own replies). A refusal is {"error"}."""
        lang = language_of(request)
        try:
            plain = History.of(history or [], chat.settings)
            comparison = compare(chat.upstream, message if isinstance(message, str) else "", plain,
                                 list(models) if isinstance(models, list) else [], visitor=chat.visitor(request),
                                 api_key=api_key or None, tick=chat.pacer.interval())
            refused = await comparison.admit()
            if refused is not None:
                yield {"error": refused.localized(lang), "code": refused.kind}
                return
            async for batch in paced(chat, comparison):
                answer = as_json(comparison, batch.summary, lang)
                if batch.summary is not None:  # what to send as ``history`` to keep comparing
                    answer["history"] = _with_turn(comparison, history, lang)
                yield answer
        except Exception:  # nothing escapes a Gradio generator
            log.exception("compare API failed")
            yield {"error": failure_text(_internal(), False, lang), "code": "internal"}

    return compare_models


def _with_turn(comparison: Comparison, history: object, lang: str) -> list[Any]:
    """``history`` and the compared turn after it (each column a note: :mod:`chatbot.core.compared_turns`)."""
    title = TEXTS.get(lang, TEXTS[DEFAULT_LANGUAGE])["unchosen"]
    replies = [(c.model, c.state.reply) for c in comparison.columns]
    return [*(history if isinstance(history, list) else []), *compared_turn(comparison.message, replies, title)]


def _internal() -> Any:
    from chatbot.core.errors import friendly

    return friendly("internal")


class CompareView:
    """The Compare panel of one page (see the module's docstring); comparisons running, by browser session."""

    def __init__(self, chat: ChatUI) -> None:
        self.chat = chat
        self.running: dict[str, Comparison] = {}

    def render(self, *, chatbot: gr.Chatbot, chatbot_state: gr.State, model: gr.Dropdown, user_key: gr.Textbox,
               finished: gr.State, shown: gr.State) -> None:
        """Lay the panel out where it is called, and wire it to the chat (``finished`` saves the chat)."""
        settings, catalogue = self.chat.settings, self.chat.upstream.catalogue
        most = min(PAGE_COLUMNS, settings.compare_max_columns)
        if most < 2:
            return
        quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
        with gr.Accordion(ui("compare"), open=False, elem_id="compare"):
            models = gr.Dropdown(choices=catalogue.choices(), multiselect=True, max_choices=most,
                                 label=ui("compare_models"), filterable=True, elem_id="compare-models")
            message = gr.Textbox(placeholder=ui("compare_message"), show_label=False, lines=2,
                                 elem_id="compare-message")
            with gr.Row():
                go = gr.Button(ui("compare_go"), variant="primary", elem_id="compare-go")
                stop_all = gr.Button(ui("compare_stop_all"), variant="stop", elem_id="compare-stop-all")
            summary = gr.Markdown("", elem_id="compare-summary")
            boxes, heads, bodies, stops, picks = [], [], [], [], []
            with gr.Row(equal_height=False):
                for i in range(most):
                    with gr.Column(min_width=280, visible=False, elem_id=f"compare-col-{i}") as box:
                        heads.append(gr.Markdown("", elem_id=f"compare-head-{i}"))
                        bodies.append(gr.Markdown("", elem_id=f"compare-body-{i}", sanitize_html=True))
                        with gr.Row():
                            stops.append(gr.Button(ui("compare_stop"), size="sm", elem_id=f"compare-stop-{i}"))
                            picks.append(gr.Button(ui("compare_pick"), size="sm", elem_id=f"compare-pick-{i}"))
                    boxes.append(box)
        result = gr.State(None)
        outputs = [*boxes, *heads, *bodies, summary, result, chatbot, chatbot_state, finished]
        go.click(self.run, [message, models, chatbot, user_key, shown], outputs, concurrency_limit=None, **quiet)
        stop_all.click(self.stop, None, None, queue=False, **quiet)
        for i, (stop, pick) in enumerate(zip(stops, picks, strict=True)):
            stop.click(self._stopper(i), None, None, queue=False, **quiet)
            pick.click(self._picker(i), [result, shown], [chatbot, chatbot_state, model, finished], queue=False,
                       **quiet)

    async def run(self, message: object, models: object, history: object, user_key: object, shown: object,
                  request: gr.Request) -> AsyncIterator[list[Any]]:
        """The Compare button: one update per batch, carrying every column that changed; at the end the
        compared turn goes into the chat (and its saved chat), each column as a note, so the next compare
        continues every column with its own model's reply (:mod:`chatbot.core.compared_turns`)."""
        lang, session = language_of(request), getattr(request, "session_hash", None) or ""
        names = [m for m in models if isinstance(m, str)][:PAGE_COLUMNS] if isinstance(models, list) else []
        text = words(message) if isinstance(message, str | dict) else ""
        skip, most = gr.skip(), min(PAGE_COLUMNS, self.chat.settings.compare_max_columns)
        try:
            plain = History.of(history, self.chat.settings)  # each column's thread: Comparison.history_for
            comparison = compare(self.chat.upstream, text, plain, names, visitor=self.chat.visitor(request),
                                 api_key=user_key if isinstance(user_key, str) and user_key else None,
                                 tick=self.chat.pacer.interval())
            refused = await comparison.admit()
            if refused is not None:
                yield [*[gr.update(visible=False)] * most, *[skip] * (2 * most), f"⚠️ {refused.localized(lang)}", None,
                       skip, skip, skip]
                return
            self.running[session] = comparison
            count = len(comparison.columns)
            boxes = [gr.update(visible=i < count) for i in range(most)]
            heads = [stats_line(s, lang) for s in comparison.stats()] + [""] * (most - count)
            yield [*boxes, *heads, *[column_body(c, lang) for c in comparison.columns], *[""] * (most - count), "",
                   None, skip, skip, skip]
            async for batch in paced(self.chat, comparison):
                changed = {e.index for e in batch.events}
                stats = comparison.stats()
                heads = [stats_line(stats[i], lang) if i in changed or batch.summary else skip for i in range(count)]
                bodies = [column_body(c, lang) if c.index in changed else skip for c in comparison.columns]
                fill = [skip] * (most - count)
                line = summary_line(batch.summary, lang) if batch.summary is not None else skip
                chat = skip, skip, skip
                if batch.summary is not None:
                    messages = _with_turn(comparison, history, lang)
                    chat = messages, messages, {"messages": messages, "chat": shown}
                chosen = self._result(comparison, history) if batch.summary is not None else skip
                yield [*[skip] * most, *heads, *fill, *bodies, *fill, line, chosen, *chat]
        except Exception:  # nothing escapes a Gradio generator (the page would lock)
            log.exception("compare failed")
            yield [*[skip] * most, *[skip] * (2 * most), f"⚠️ {failure_text(_internal(), False, lang)}", None,
                   skip, skip, skip]
        finally:
            self.running.pop(session, None)

    @staticmethod
    def _result(comparison: Comparison, history: object) -> dict[str, Any]:
        return {"history": list(history) if isinstance(history, list) else [], "message": comparison.message,
                "columns": [{"name": c.name, "model": c.model, "reply": c.state.reply} for c in comparison.columns]}

    def stop(self, request: gr.Request) -> None:
        comparison = self.running.get(getattr(request, "session_hash", None) or "")
        if comparison is not None:
            comparison.stop_all()

    def _stopper(self, index: int) -> Callable[[gr.Request], None]:
        def stop(request: gr.Request) -> None:
            comparison = self.running.get(getattr(request, "session_hash", None) or "")
            if comparison is not None:
                comparison.stop(index)

        return stop

    def _picker(self, index: int) -> Callable[..., tuple[Any, ...]]:
        def pick(result: object, shown: object, request: gr.Request) -> tuple[Any, ...]:
            """The chosen reply becomes the history; the others stay in the chat as collapsed notes."""
            columns = result.get("columns") if isinstance(result, dict) else None
            if not isinstance(result, dict) or not isinstance(columns, list) or not 0 <= index < len(columns):
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            lang = language_of(request)
            chosen = columns[index]
            others = [note(c["model"], c["reply"], say("unchosen", lang, model=c["model"]))
                      for i, c in enumerate(columns) if i != index]
            messages = [*result["history"], {"role": "user", "content": result["message"]}, *others,
                        {"role": "assistant", "content": chosen["reply"]}]
            return messages, messages, chosen["name"], {"messages": messages, "chat": shown}

        return pick
