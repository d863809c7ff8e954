"""Settings from flags, environment and .env; presets; bad values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from chatbot.core.catalogue import build_catalogue
from chatbot.core.settings import (
    DEMO_BASE_URL,
    DERIVED_ENV,
    PLACEHOLDER_KEY,
    PUBLIC_MAX_TOKENS,
    ConfigError,
    Settings,
    build_parser,
)

ROOT = Path(__file__).resolve().parents[1]


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


# ------------------------------------------------------------------ the settings model (issue 14, item 3)


def test_importing_the_settings_loads_neither_gradio_nor_the_sdk() -> None:
    """``--help`` and a bad value can answer in about a second only if the settings import nothing heavy."""
    code = ("import sys, chatbot.core.settings; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('gradio', 'openai', 'httpx2', 'fastapi', 'uvicorn') "
            "or m in ('chatbot.core.limits', 'chatbot.core.errors'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []


def test_every_key_token_and_password_is_a_secretstr_never_shown() -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-hidden-key-0001", "REDIS_URL": "redis://:hidden-redis-pw@localhost:6379/0",
        "CHATBOT_API_TOKENS": "hidden-api-token-000001", "CHATBOT_AUTH": "ana:hidden-login-pw",
        "CHATBOT_BROWSER_SECRET": "hidden-browser-secret-01",
    }
    settings = load(**secrets)
    values = [settings.api_key, settings.redis_url, *settings.api_tokens, settings.auth[0][1], settings.browser_secret]
    assert all(isinstance(value, SecretStr) for value in values)
    assert [value.get_secret_value() for value in values] == [  # type: ignore[union-attr]
        "sk-hidden-key-0001", secrets["REDIS_URL"], "hidden-api-token-000001", "hidden-login-pw",
        "hidden-browser-secret-01",
    ]
    shown = repr(settings) + str(settings) + settings.model_dump_json() + repr(settings.model_dump())
    assert "hidden" not in shown and settings.auth[0][0] == "ana"
    for bad in ({"CHATBOT_AUTH": "ana-hidden-login-pw"}, {"REDIS_URL": "http://:hidden-pw@host"},
                {"CHATBOT_BROWSER_SECRET": "hidden-short"}, {"CHATBOT_API_TOKENS": "hidden"}):
        with pytest.raises(ConfigError) as info:
            load(**bad)
        assert str(info.value).startswith(next(iter(bad))) and "hidden" not in str(info.value)


def test_every_variable_is_in_the_help_and_the_readme() -> None:
    """Each variable is written once, beside its field; the help text and the README follow it."""
    names = {str(f.validation_alias) for f in Settings.model_fields.values() if f.validation_alias}
    names |= set(DERIVED_ENV)
    assert {"CHATBOT_MAX_TOKENS", "OPENAI_API_KEY", "CHATBOT_RATE_LIMIT", "GRADIO_SERVER_PORT"} <= names
    help_text = " ".join(build_parser().format_help().split())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table_rows = [line.split("|")[1] for line in readme.splitlines() if line.startswith("| `")]  # first cells
    for name in names:
        assert name in help_text and any(f"`{name}`" in cell for cell in table_rows), name


def test_public_defaults_follow_the_bind_the_share_link_and_spaces() -> None:
    local = load(OPENAI_API_KEY="sk-x")
    assert not local.public and local.max_tokens == 4096 and not local.policy.active
    for public in (load(OPENAI_API_KEY="sk-x", CHATBOT_SHARE="yes"), load(["--host", "0.0.0.0"], OPENAI_API_KEY="k"),
                   load(OPENAI_API_KEY="sk-x", SPACE_ID="me/space", OAUTH_CLIENT_ID="id")):
        assert public.public and public.max_tokens == PUBLIC_MAX_TOKENS
        assert [str(i) for i in public.policy.rate] == ["5 per 1 minute", "50 per 1 day"]
        assert public.policy.streams_per_visitor == 1 and public.policy.max_streams == 100
    space = load(OPENAI_API_KEY="sk-x", SPACE_ID="me/space", OAUTH_CLIENT_ID="id")
    assert (space.host, space.trusted_proxies, space.hf_oauth) == ("0.0.0.0", 1, True)
    custom = load(["--share"], OPENAI_API_KEY="sk-x", CHATBOT_MAX_TOKENS="64", CHATBOT_RATE_LIMIT="none",
                  CHATBOT_API_RATE_LIMIT="9/hour", CHATBOT_DAILY_BUDGET_USD="2.5")
    assert custom.share and custom.max_tokens == 64 and custom.policy.rate == ()
    assert [str(i) for i in custom.policy.api_rate] == ["9 per 1 hour"] and custom.policy.daily_budget_usd == 2.5
    keyless = load(CHATBOT_REQUIRE_USER_KEY="1", CHATBOT_ALLOW_USER_KEY="0")
    assert keyless.require_user_key and keyless.allow_user_key and not keyless.demo
    for bad in ("CHATBOT_RATE_LIMIT", "CHATBOT_STREAMS_PER_VISITOR", "CHATBOT_DAILY_BUDGET_USD", "CHATBOT_SHARE"):
        with pytest.raises(ConfigError, match=f"^{bad}: "):
            load(**{bad: "lots"})


def test_blank_values_are_unset_and_values_are_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(OPENAI_API_KEY=" sk-x ", CHATBOT_MAX_TOKENS="  ", CHATBOT_PROVIDER="", CHATBOT_DB=" x.db ")
    assert settings.api_key.get_secret_value() == "sk-x" and settings.max_tokens == 4096
    assert settings.db_path == "x.db" and settings.base_url == "https://api.openai.com/v1"
    # the process environment is read by load() alone; Settings() built in code is the defaults
    monkeypatch.setenv("CHATBOT_MAX_TOKENS", "7")
    assert Settings.load([], env_file=None).max_tokens == 7 and Settings().max_tokens == 4096


def test_settings_are_frozen_and_hold_no_live_catalogue() -> None:
    settings = load(OPENAI_API_KEY="sk-x", CHATBOT_MODELS="mini=gpt-4.1-mini")
    with pytest.raises(ValidationError):
        settings.max_tokens = 1  # type: ignore[misc]
    assert not hasattr(settings, "catalogue") and settings.models == "mini=gpt-4.1-mini"
    changed = settings.model_copy(update={"max_message_chars": 50})
    assert changed.max_message_chars == 50 and settings.max_message_chars == 200_000
