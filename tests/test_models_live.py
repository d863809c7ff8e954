"""The live model catalogue: parsing what providers list, and fetching it from the fake upstream when it
answers, when it is slow, and when it fails (the app starts and chats in every case)."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest
from conftest import TEST_KEY, make_settings, predict
from fake_upstream import FakeUpstream
from gradio_client import Client

import app as switchboard
from chatbot.core.catalogue import DEFAULT_CONTEXT_WINDOW, Catalogue, build_catalogue
from chatbot.core.models_live import LiveModels, parse_entry, parse_models, per_million
from chatbot.core.settings import Settings
from chatbot.core.upstream import Upstream
from chatbot.core.windows import from_lmstudio, from_ollama_show, from_props, server_root

OPENROUTER_ENTRY = {
    "id": "anthropic/claude-test",
    "name": "Anthropic: Claude Test",
    "context_length": 200_000,
    "architecture": {"modality": "text+image->text", "input_modalities": ["text", "image"],
                     "output_modalities": ["text"]},
    "pricing": {"prompt": "0.000003", "completion": "0.000015", "request": "0", "image": "0.0048"},
    "top_provider": {"context_length": 200_000, "max_completion_tokens": 64_000, "is_moderated": False},
    "supported_parameters": ["max_tokens", "reasoning", "include_reasoning"],
}


def test_openrouter_entry_gives_window_prices_per_million_vision_and_reasoning() -> None:
    model = parse_entry(OPENROUTER_ENTRY)
    assert model is not None and model.known
    assert (model.context_window, model.max_output) == (200_000, 64_000)
    assert (model.input_price, model.output_price) == (3.0, 15.0)
    assert model.vision and model.reasoning
    assert model.cost(1_000_000, 1_000_000) == pytest.approx(18.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.000003", 3.0), ("0", 0.0), (0.0000004, 0.4), ("-1", None), ("", None), ("abc", None), (None, None),
     (True, None), ("nan", None), ("inf", None)],
)
def test_per_token_prices_become_per_million(value: object, expected: float | None) -> None:
    assert per_million(value) == expected


def test_other_providers_shapes() -> None:
    groq = parse_entry({"id": "llama-3.3-70b-versatile", "object": "model", "context_window": 131_072})
    vllm = parse_entry({"id": "Qwen/Qwen2.5-7B-Instruct", "max_model_len": 32_768})
    bare = parse_entry({"id": "openai/gpt-4o"}, Catalogue().info("openai/gpt-4o"))
    unknown = parse_entry({"id": "llama3.2:latest"}, Catalogue().info("llama3.2:latest"))
    assert groq.context_window == 131_072 and vllm.context_window == 32_768
    assert bare.context_window == 128_000 and bare.input_price == 2.5 and bare.vision  # the package's facts
    assert not unknown.known and unknown.input_price is None
    variable = parse_entry({"id": "openrouter/auto", "context_length": 2_000_000,
                            "pricing": {"prompt": "-1", "completion": "-1"}})
    assert variable.input_price is None and variable.cost(10, 10) is None


@pytest.mark.parametrize(
    "entry",
    [
        {"id": "text-embedding-3-small"}, {"id": "whisper-1"}, {"id": "tts-1-hd"}, {"id": "dall-e-3"},
        {"id": "omni-moderation-latest"}, {"id": "bad id with spaces"}, {"id": 42}, {"name": "no id"}, "x", None,
        {"id": "google/imagen", "architecture": {"output_modalities": ["image"]}},
    ],
)
def test_entries_that_are_not_chat_models_are_left_out(entry: object) -> None:
    assert parse_entry(entry) is None


def test_payload_shapes() -> None:
    assert [m.id for m in parse_models({"data": [{"id": "a"}, {"id": "a"}, {"id": "b"}]})] == ["a", "b"]
    assert [m.id for m in parse_models([{"id": "a"}])] == ["a"]
    for bad in ({"data": "x"}, {"error": {"message": "no"}}, "html", None):
        with pytest.raises(ValueError):
            parse_models(bad)


def live_settings(fake: FakeUpstream, **env: str) -> Settings:
    return make_settings(fake.base_url, CHATBOT_LIVE_MODELS="1", **env)


def test_a_list_that_answers_is_offered_after_the_aliases_and_feeds_the_budget(fake: FakeUpstream) -> None:
    fake.models = [OPENROUTER_ENTRY, {"id": "fake/large", "context_length": 131_072}, {"id": "gpt-4.1-mini"}]
    settings = live_settings(fake, CHATBOT_MODELS_REFRESH="0")
    live = LiveModels(settings).start(wait=10)
    assert live.fetched.is_set() and fake.models_calls == 1 and live.failures == 0
    values = [value for _, value in live.catalogue.choices()]
    assert values[:5] == ["fast", "smart", "reasoning", "budget", "creative"]
    assert values[5:] == ["anthropic/claude-test", "fake/large"]  # gpt-4.1-mini is configured already
    labels = dict((v, label) for label, v in live.catalogue.choices())
    assert labels["anthropic/claude-test"] == "anthropic/claude-test · 200K · $3/$15 per 1M · images"
    assert labels["fake/large"].startswith("fake/large · 131K · $1/$2 per 1M")  # the fake's default pricing
    upstream = Upstream(settings, catalogue=live.catalogue)
    model = upstream.resolve("fake/large")
    assert model is not None and model.context_window == 131_072
    assert upstream.budget(model) == (131_072 - 4_096, 4_096)
    # the live catalogue is the app's (passed to Upstream), not the frozen settings': these stay as loaded
    assert Upstream(settings).resolve("fake/large") is None and not hasattr(settings, "catalogue")


def test_a_slow_list_does_not_hold_up_the_start_and_lands_later(fake: FakeUpstream) -> None:
    fake.models_delay = 1.0
    settings = live_settings(fake, CHATBOT_MODELS_REFRESH="0")
    live = LiveModels(settings).start(wait=0.05)
    assert live.catalogue.live_count == 0  # start-up went on without it
    assert live.fetched.wait(20) and live.catalogue.live_count == 2


@pytest.mark.parametrize("status", [401, 404, 500, 503])
def test_a_failing_list_leaves_the_configured_models(fake: FakeUpstream, status: int, caplog) -> None:
    fake.models_status = status
    settings = live_settings(fake, CHATBOT_MODELS_REFRESH="0")
    with caplog.at_level(logging.INFO, logger="switchboard.models"):
        live = LiveModels(settings).start(wait=10)
    assert live.failures == 1 and live.catalogue.live_count == 0
    assert [v for _, v in live.catalogue.choices()] == [v for _, v in build_catalogue(None).choices()]
    assert f"HTTP {status}" in caplog.text and TEST_KEY not in caplog.text


def test_an_unreachable_provider_is_one_log_line(caplog) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    settings = make_settings(f"http://127.0.0.1:{port}/v1", CHATBOT_LIVE_MODELS="1", CHATBOT_MODELS_REFRESH="0")
    with caplog.at_level(logging.WARNING, logger="switchboard.models"):
        live = LiveModels(settings).start(wait=15)
    assert live.fetched.is_set() and live.failures == 1 and "ConnectError" in caplog.text


def test_the_list_is_refreshed_in_the_background(fake: FakeUpstream) -> None:
    settings = live_settings(fake, CHATBOT_MODELS_REFRESH="0.05")
    live = LiveModels(settings).start(wait=10)
    try:
        fake.models = [{"id": "fake/newcomer", "context_length": 50_000}]
        deadline = time.monotonic() + 10
        while live.catalogue.resolve("fake/newcomer") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert live.catalogue.resolve("fake/newcomer").context_window == 50_000
        assert live.catalogue.resolve("fake/small") is None  # no longer listed
    finally:
        live.stop()


def test_demo_mode_and_the_setting_skip_fetching(fake: FakeUpstream) -> None:
    demo = Settings.load([], environ={"CHATBOT_LIVE_MODELS": "1"}, env_file=None)
    assert demo.demo and LiveModels(demo).start()._thread is None
    off = make_settings(fake.base_url)  # the tests' default: CHATBOT_LIVE_MODELS=0
    assert LiveModels(off).start()._thread is None and fake.models_calls == 0


@pytest.mark.parametrize("trouble", ["ok", "slow", "fails"])
def test_the_app_starts_and_chats_whatever_the_list_does(fake: FakeUpstream, trouble: str) -> None:
    if trouble == "slow":
        fake.models_delay = 30
    if trouble == "fails":
        fake.models_status = 500
    settings = live_settings(fake, CHATBOT_MODELS_TIMEOUT="0.2")
    demo = switchboard.build(settings)
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        switchboard.launch(demo, settings, server_port=port, prevent_thread_lock=True, quiet=True)
        config = httpx.get(demo.local_url + "config", timeout=10).text
        assert ("fake/large" in config) == (trouble == "ok")
        reply = predict(Client(demo.local_url, verbose=False), "hi", model="fast", api_name="/chat")
        assert reply.startswith("Hello from gpt-4.1-mini")
    finally:
        demo.close()


@pytest.mark.parametrize(
    ("shape", "window"),
    [("vllm", 4096), ("lmstudio", 4096), ("ollama", 4096), ("llamacpp", 4096), ("llama-cpp-python", None)],
)
def test_each_local_server_shape_gives_the_window_it_runs_with(
    fake: FakeUpstream, shape: str, window: int | None
) -> None:
    fake.shape, fake.models = shape, ["local/model", "other:latest"]
    settings = live_settings(fake, CHATBOT_MODELS="local/model", CHATBOT_MODELS_REFRESH="0")
    live = LiveModels(settings).start(wait=10)
    assert live.fetched.is_set() and live.failures == 0
    for model_id in ("local/model", "other:latest"):
        model = live.catalogue.info(model_id)
        assert model.context_window == (window or DEFAULT_CONTEXT_WINDOW) and model.known == bool(window)
    budget = Upstream(settings, catalogue=live.catalogue).budget(live.catalogue.info("local/model"))
    assert budget == ((4096 - 1024, 1024) if window else (8192 - 2048, 2048))
    # a refresh asks again (a restarted server may run another window), but only the route that answered,
    # and nothing once none did
    fake.window = 2048
    asked = list(fake.window_calls)
    live.refresh()
    again = fake.window_calls[len(asked):]
    expected = {"vllm": [], "lmstudio": ["/api/v0/models"], "ollama": ["/api/show"] * 2, "llamacpp": ["/props"],
                "llama-cpp-python": []}
    assert again == expected[shape]
    assert live.windows.shape == {"vllm": None, "llama-cpp-python": ""}.get(shape, shape)
    assert live.catalogue.info("local/model").context_window == (2048 if window else DEFAULT_CONTEXT_WINDOW)


def test_a_window_route_is_not_asked_about_models_whose_window_is_known(fake: FakeUpstream) -> None:
    fake.models = [{"id": "fake/listed", "context_length": 50_000}]  # an aggregator's list: every window given
    live = LiveModels(live_settings(fake, CHATBOT_MODELS_REFRESH="0")).start(wait=10)
    assert live.catalogue.info("fake/listed").context_window == 50_000 and fake.window_calls == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [({"default_generation_settings": {"n_ctx": 2048}}, 2048), ({"n_ctx": 4096}, 4096), ({"n_ctx": 0}, None),
     ({"default_generation_settings": {"n_ctx": "lots"}}, None), ([], None), (None, None)],
)
def test_llamacpp_props(payload: object, expected: int | None) -> None:
    assert from_props(payload) == expected


def test_ollama_show_prefers_num_ctx_and_lmstudio_the_loaded_window() -> None:
    show = {"parameters": 'num_ctx 8192\nstop "<|eot_id|>"', "model_info": {"llama.context_length": 131072}}
    assert from_ollama_show(show) == 8192
    assert from_ollama_show({"model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768}}) == 32768
    assert from_ollama_show({"model_info": {"qwen2.context_length": True}}) is None
    listed = {"data": [{"id": "a", "max_context_length": 32768, "loaded_context_length": 4096},
                       {"id": "b", "max_context_length": 32768}, {"id": "c"}, "x"]}
    assert from_lmstudio(listed) == {"a": 4096, "b": 32768}
    assert parse_entry({"id": "qwen", "max_context_length": 32768}).context_window == 32768
    assert server_root("http://localhost:11434/v1") == server_root("http://localhost:11434/v1/") == (
        "http://localhost:11434")
