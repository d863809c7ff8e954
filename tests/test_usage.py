"""Cost and usage: the line under each reply, the session total, the context gauge; end to end from the
fake upstream's usage chunk and from OpenRouter's own ``usage.cost``."""

from __future__ import annotations

import pytest
from conftest import make_settings
from fake_upstream import Behaviour, FakeUpstream

from chatbot.core.catalogue import Model
from chatbot.core.events import Usage
from chatbot.core.i18n import text
from chatbot.core.upstream import Upstream
from chatbot.core.usage import Gauge, Totals, format_usd, measure, reply_detail, reply_line
from chatbot.web.ui import COST_ID, ChatUI, ReplyView


@pytest.mark.parametrize(
    ("amount", "shown"),
    [(0, "$0"), (1.5, "$1.50"), (1234.5, "$1,234.50"), (0.5, "$0.50"), (0.0123, "$0.012"),
     (0.000034, "$0.000034"), (0.00012345, "$0.00012"), (float("nan"), "$0")],
)
def test_small_amounts_keep_their_significant_digits(amount: float, shown: str) -> None:
    assert format_usd(amount) == shown


def test_reply_line_and_where_the_price_came_from() -> None:
    model = Model("m", input_price=0.4, output_price=1.6)
    upstream = Usage(1234, 56, 0.0123, "upstream")
    assert reply_line(upstream) == "1,234 tokens in · 56 out · $0.012"
    assert reply_detail(upstream, model) == text("cost_upstream")
    listed = Usage(1000, 100, model.cost(1000, 100), "catalogue")
    assert "$0.40 in and $1.60 out" in reply_detail(listed, model)
    unknown = Usage(10, 5, None, "unknown")
    assert reply_line(unknown).endswith("price unknown") and "$0" not in reply_line(unknown)
    assert "no price is known" in reply_detail(unknown, Model("local", known=False)).lower()
    assert reply_line(unknown, "es").endswith("precio desconocido")


def test_session_totals_add_up_and_never_show_an_unknown_price_as_zero() -> None:
    totals = Totals()
    assert "no replies yet" in totals.render()
    totals = totals.add(Usage(100, 10, None, "unknown"))
    assert totals.render().endswith("price unknown") and "$0" not in totals.render()
    totals = totals.add(Usage(200, 20, 0.5, "upstream")).add(Usage(300, 30, 0.25, "catalogue"))
    assert (totals.replies, totals.prompt_tokens, totals.completion_tokens, totals.unpriced) == (3, 600, 60, 1)
    assert totals.cost == pytest.approx(0.75)
    line = totals.render()
    assert "3 replies" in line and "600 tokens in" in line and "$0.75 (+ 1 with unknown price)" in line
    assert Totals.from_dict(totals.as_dict()) == totals
    assert Totals.from_dict({"replies": "x"}) == Totals() and Totals.from_dict(None) == Totals()
    assert "1 respuesta" in Totals().add(Usage(1, 1, 0.1, "upstream")).render("es")


def test_gauge_counts_the_conversation_against_the_budget() -> None:
    model = Model("gpt-4.1-mini", 1_000, input_price=1, output_price=1)
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello " * 50}]
    gauge = measure(history, model, budget=800, reply_reserve=200)
    assert 50 < gauge.used < 800 and gauge.budget == 800 and gauge.window == 1_000
    html = gauge.render()
    assert f'data-used="{gauge.used}"' in html and "of 800 tokens" in html
    over = Gauge(used=900, budget=800, window=1_000, reserve=200, model="m<script>")
    assert "older turns will be left out" in over.render() and "<script>" not in over.render()
    assert "Contexto" in gauge.render("es")


async def _reply(ui: ChatUI, message: str, model: str = "fast", history: list | None = None) -> tuple:
    view = ReplyView()
    updates = [update async for update in ui.respond(message, history or [], model, view=view)]
    return view, updates[-1]


def _cost_note(shown: list) -> dict:
    return next(m for m in shown if (m.get("metadata") or {}).get("id") == COST_ID)


async def test_usage_chunk_gives_tokens_and_a_catalogue_price(fake: FakeUpstream) -> None:
    settings = make_settings(fake.base_url)
    ui = ChatUI(settings, Upstream(settings))
    view, shown = await _reply(ui, "Hello there")
    usage = view.usage
    assert usage is not None and usage.cost_source == "catalogue"
    assert usage.prompt_tokens > 0 and usage.completion_tokens == fake.last.chunks_sent
    model = ui.upstream.catalogue.info("gpt-4.1-mini")
    assert usage.cost == pytest.approx(model.cost(usage.prompt_tokens, usage.completion_tokens))
    note = _cost_note(shown)
    assert note["metadata"]["title"] == reply_line(usage, model="gpt-4.1-mini") and note["metadata"]["status"] == "done"
    assert note["metadata"]["title"].startswith("`gpt-4.1-mini` · ")  # which model wrote the reply
    assert "list prices of gpt-4.1-mini" in note["content"]["text"]
    totals, session, _, finished = await ui.after_reply("Hello there", [], shown, "fast", view, None, "en")
    assert totals["replies"] == 1 and totals["prompt_tokens"] == usage.prompt_tokens
    assert "1 reply" in session and format_usd(usage.cost) in session
    assert finished["messages"][0] == {"role": "user", "content": [{"type": "text", "text": "Hello there"}]}


async def test_openrouter_cost_wins_over_the_catalogue(fake: FakeUpstream) -> None:
    fake.push(Behaviour(cost=0.0123))
    settings = make_settings(fake.base_url)
    ui = ChatUI(settings, Upstream(settings))
    view, shown = await _reply(ui, "Hi")
    assert view.usage.cost == pytest.approx(0.0123) and view.usage.cost_source == "upstream"
    assert _cost_note(shown)["metadata"]["title"].endswith("$0.012")
    totals, session, _, _ = await ui.after_reply("Hi", [], shown, "fast", view, {"replies": 2, "cost": 1.0}, "en")
    assert totals["replies"] == 3 and totals["cost"] == pytest.approx(1.0123) and "$1.01" in session


async def test_a_model_without_a_price_says_so(fake: FakeUpstream) -> None:
    settings = make_settings(fake.base_url, CHATBOT_MODELS="local-model")
    ui = ChatUI(settings, Upstream(settings))
    view, shown = await _reply(ui, "Hi", model="local-model")
    assert view.usage.cost is None and view.usage.cost_source == "unknown"
    assert _cost_note(shown)["metadata"]["title"].endswith("price unknown")


async def test_no_usage_reported_means_no_cost_line_only_the_model(fake: FakeUpstream) -> None:
    fake.push(Behaviour(usage=False))
    settings = make_settings(fake.base_url)
    ui = ChatUI(settings, Upstream(settings))
    view, shown = await _reply(ui, "Hi")
    notes = [m for m in shown if (m.get("metadata") or {}).get("id") == COST_ID]
    assert view.usage is None and [n["metadata"]["title"] for n in notes] == ["`gpt-4.1-mini`"]


async def test_the_gauge_grows_with_the_conversation_and_follows_the_model(fake: FakeUpstream) -> None:
    settings = make_settings(fake.base_url, CHATBOT_MODELS="fast=gpt-4.1-mini,small=local-model")
    ui = ChatUI(settings, Upstream(settings))
    history = [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "ok"}]
    empty, full = ui.gauge("fast", []), ui.gauge("fast", history)
    used = [int(h.split('data-used="')[1].split('"')[0]) for h in (empty, full)]
    assert used[0] < used[1]
    assert "of 1,043,480 tokens" in full and "of 6,144 tokens" in ui.gauge("small", history)  # window - reply
    assert ui.gauge("not-offered", history) == ""
