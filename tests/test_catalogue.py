"""The model catalogue: the data table, aliases, parsing CHATBOT_MODELS."""

from __future__ import annotations

import pytest

from chatbot.core.catalogue import DEFAULT_CONTEXT_WINDOW, Catalogue, Model, build_catalogue, parse_models_spec


def test_default_aliases_of_the_tutorial() -> None:
    catalogue = build_catalogue(None)
    assert catalogue.aliases == {
        "fast": "gpt-4.1-mini", "smart": "claude-sonnet-4-6", "reasoning": "o3",
        "budget": "deepseek-chat", "creative": "claude-sonnet-4-6",
    }
    assert catalogue.default == "fast"
    assert [value for _, value in catalogue.choices()] == ["fast", "smart", "reasoning", "budget", "creative"]


def test_resolve_alias_id_and_refusal() -> None:
    catalogue = build_catalogue(None)
    assert catalogue.resolve("smart").id == "claude-sonnet-4-6"
    assert catalogue.resolve("o3").reasoning
    assert catalogue.resolve("gpt-4o") is None
    assert catalogue.resolve("gpt-4o", allow_any=True).context_window == 128_000
    assert catalogue.resolve(None) is None and catalogue.resolve(["fast"]) is None  # type: ignore[arg-type]
    assert catalogue.resolve("bad id with spaces", allow_any=True) is None


def test_unknown_models_get_a_conservative_window_and_no_price() -> None:
    model = Catalogue().info("some-local-model")
    assert model.context_window == DEFAULT_CONTEXT_WINDOW and not model.known
    assert model.cost(1000, 1000) is None


def test_provider_prefixed_ids_use_the_known_facts() -> None:
    assert Catalogue().info("anthropic/claude-sonnet-4-6").context_window == 200_000


def test_cost_from_prices() -> None:
    assert Model("m", input_price=1.0, output_price=2.0).cost(1_000_000, 500_000) == pytest.approx(2.0)


def test_live_models_come_after_configured_ones() -> None:
    catalogue = build_catalogue("fast=gpt-4.1-mini")
    catalogue.add_live([Model("zeta", 32_000), Model("gpt-4.1-mini"), Model("alpha", 16_000)])
    assert [v for _, v in catalogue.choices()] == ["fast", "alpha", "zeta"]
    assert catalogue.resolve("zeta").context_window == 32_000


@pytest.mark.parametrize("spec", ["fast=", "=gpt-4o", "a b", "fast=gpt 4", ",,", "x=y=z"])
def test_malformed_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_models_spec(spec)


def test_spec_parsing() -> None:
    assert parse_models_spec(" fast = gpt-4.1-mini ,llama3.2:8b,openai/gpt-4o ") == [
        ("fast", "gpt-4.1-mini"), (None, "llama3.2:8b"), (None, "openai/gpt-4o"),
    ]


def test_live_models_get_labels_and_fill_in_configured_unknown_ids() -> None:
    from chatbot.core.catalogue import live_label

    catalogue = build_catalogue("local=llama3.2:latest")
    assert not catalogue.resolve("local").known
    catalogue.add_live([Model("llama3.2:latest", 131_072), Model("big/one", 2_000_000, input_price=0, output_price=0,
                                                                   vision=True)])
    assert catalogue.resolve("local").context_window == 131_072  # the provider's list fills in the facts
    assert live_label(catalogue.info("big/one")) == "big/one · 2M · free · images"
    assert live_label(Model("x", known=False)) == "x"
    assert catalogue.live_count == 2
