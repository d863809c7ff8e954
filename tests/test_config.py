"""Settings from flags, environment and .env; presets; bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from chatbot.catalogue import build_catalogue
from chatbot.config import DEMO_BASE_URL, PLACEHOLDER_KEY, ConfigError, Settings


def load(argv: list[str] | None = None, env_file: str | None = None, **environ: str) -> Settings:
    return Settings.load(argv or [], environ=environ, env_file=env_file)


def test_nothing_configured_is_demo_mode() -> None:
    settings = load()
    assert settings.demo and settings.api_key is None and settings.base_url == DEMO_BASE_URL


def test_openai_key_alone_talks_to_openai_like_the_sdk() -> None:
    settings = load(OPENAI_API_KEY="sk-x")
    assert not settings.demo and settings.base_url == "https://api.openai.com/v1"
    assert settings.api_key.get_secret_value() == "sk-x"


@pytest.mark.parametrize(
    ("provider", "url", "key_var"),
    [
        ("lemondata", "https://api.lemondata.cc/v1", "LEMONDATA_API_KEY"),
        ("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        ("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    ],
)
def test_presets_and_their_own_key_variables(provider: str, url: str, key_var: str) -> None:
    settings = load(CHATBOT_PROVIDER=provider, **{key_var: "k-1"})
    assert (settings.base_url, settings.api_key.get_secret_value(), settings.demo) == (url, "k-1", False)
    # the preset's own key variable alone picks the preset
    assert load(**{key_var: "k-2"}).base_url == url


def test_flag_wins_over_environment_which_wins_over_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OPENAI_API_KEY=from-file\nCHATBOT_MAX_TOKENS=100\nCHATBOT_PROVIDER=groq\n")
    settings = load(["--provider", "deepseek"], env_file=str(env_file), CHATBOT_MAX_TOKENS="200")
    assert settings.api_key.get_secret_value() == "from-file"
    assert settings.max_tokens == 200
    assert settings.base_url == "https://api.deepseek.com/v1"


def test_explicit_base_url_wins_over_preset_and_needs_no_key() -> None:
    settings = load(CHATBOT_PROVIDER="openrouter", OPENAI_BASE_URL="http://localhost:8080/v1/")
    assert settings.base_url == "http://localhost:8080/v1" and settings.provider == "custom"
    assert not settings.demo and settings.api_key.get_secret_value() == PLACEHOLDER_KEY


def test_local_presets_need_no_key() -> None:
    settings = load(CHATBOT_PROVIDER="ollama")
    assert not settings.demo and settings.base_url == "http://localhost:11434/v1"


def test_port_host_share_and_numbers() -> None:
    settings = load(["--port", "9000", "--share", "--host", "0.0.0.0"], CHATBOT_CONTEXT_TOKENS="4096")
    assert (settings.port, settings.share, settings.host, settings.context_tokens) == (9000, True, "0.0.0.0", 4096)
    assert load(GRADIO_SERVER_PORT="7000").port == 7000
    assert load(SPACE_ID="me/space").host == "0.0.0.0"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"CHATBOT_PROVIDER": "acme"}, "CHATBOT_PROVIDER"),
        ({"CHATBOT_MODELS": "a b c"}, "CHATBOT_MODELS"),
        ({"CHATBOT_MODELS": " , "}, "CHATBOT_MODELS"),
        ({"CHATBOT_CONTEXT_TOKENS": "12k"}, "CHATBOT_CONTEXT_TOKENS"),
        ({"CHATBOT_IDLE_TIMEOUT": "nan"}, "CHATBOT_IDLE_TIMEOUT"),
        ({"CHATBOT_ALLOW_ANY_MODEL": "maybe"}, "CHATBOT_ALLOW_ANY_MODEL"),
        ({"GRADIO_SERVER_PORT": "http"}, "GRADIO_SERVER_PORT"),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**environ)
    message = str(info.value)
    assert message.startswith(variable) and "\n" not in message


def test_secret_never_shows_itself() -> None:
    settings = load(OPENAI_API_KEY="sk-very-secret-value")
    for text in (repr(settings), str(settings), repr(settings.api_key), f"{settings.api_key}"):
        assert "sk-very-secret-value" not in text
    assert isinstance(settings.api_key, SecretStr) and settings.api_key.get_secret_value() == "sk-very-secret-value"


def test_models_setting_builds_the_catalogue() -> None:
    settings = load(CHATBOT_MODELS="mini=gpt-4.1-mini, llama3.2")
    assert build_catalogue(settings.models).choices() == [("mini · gpt-4.1-mini", "mini"), ("llama3.2", "llama3.2")]


def test_settings_of_the_live_catalogue_attachments_and_saved_chats() -> None:
    default = load(OPENAI_API_KEY="sk-x")
    assert default.live_models and default.models_timeout == 3.0 and default.models_refresh == 3600.0
    assert default.max_upload_mb == 20.0 and default.browser_secret is None
    custom = load(
        OPENAI_API_KEY="sk-x", CHATBOT_LIVE_MODELS="off", CHATBOT_MODELS_TIMEOUT="0", CHATBOT_MODELS_REFRESH="0",
        CHATBOT_MAX_UPLOAD_MB="2.5", CHATBOT_BROWSER_SECRET="operator-secret-0123456789",
    )
    assert not custom.live_models and custom.models_timeout == 0 and custom.models_refresh == 0
    assert custom.max_upload_mb == 2.5
    assert "operator-secret" not in repr(custom)
    assert custom.browser_secret.get_secret_value() == "operator-secret-0123456789"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"CHATBOT_LIVE_MODELS": "maybe"}, "CHATBOT_LIVE_MODELS"),
        ({"CHATBOT_MODELS_TIMEOUT": "-1"}, "CHATBOT_MODELS_TIMEOUT"),
        ({"CHATBOT_MODELS_REFRESH": "hourly"}, "CHATBOT_MODELS_REFRESH"),
        ({"CHATBOT_MAX_UPLOAD_MB": "0"}, "CHATBOT_MAX_UPLOAD_MB"),
        ({"CHATBOT_BROWSER_SECRET": "short-secret"}, "CHATBOT_BROWSER_SECRET"),
    ],
)
def test_bad_values_of_the_new_settings(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**environ)
    assert str(info.value).startswith(variable) and "short-secret" not in str(info.value)
