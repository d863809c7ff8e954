"""Settings: loaded once from CLI flags, the environment and an optional ``.env`` (in that order of
precedence), validated by pydantic-settings, and frozen. Each setting is one field below, its environment
name written beside it (``validation_alias``); keys, tokens and passwords are ``SecretStr`` (never shown in
``repr``, ``str``, logs or errors).

Contract: this module imports no domain module that pulls in Gradio or the SDK (only the light
:mod:`chatbot.core.catalogue`, :mod:`chatbot.core.policy` and :mod:`chatbot.core.providers`), so
``python app.py --help`` and a bad value answer before the heavy imports. The environment is injectable
(``Settings.load(environ=...)``): the merged flags/environment/.env mapping is validated as the model's
input, since pydantic-settings' own environment source reads ``os.environ`` only
(pydantic/pydantic-settings#653).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from chatbot.core.catalogue import build_catalogue
from chatbot.core.policy import Policy, parse_limits
from chatbot.core.providers import DEMO_BASE_URL, PLACEHOLDER_KEY, PROVIDERS


class ConfigError(ValueError):
    """A setting has a value the app cannot use. The message is one line naming the setting."""


#: Shortest API token accepted: a guessable token is worse than none (it looks like protection).
MIN_TOKEN_CHARS = 16
_MAKE_ONE = "make one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\""

#: Reply cap on a public URL unless CHATBOT_MAX_TOKENS says otherwise.
PUBLIC_MAX_TOKENS = 1_024
#: Limits on a public URL (a share link, Spaces, or a non-loopback bind) unless the settings say otherwise;
#: on loopback (one person on their own machine) none applies. Signed-in Hugging Face users get the higher ones.
PUBLIC_DEFAULTS = {
    "CHATBOT_RATE_LIMIT": "5/minute;50/day",
    "CHATBOT_TOKEN_LIMIT": "30000/day",
    "CHATBOT_SIGNED_IN_RATE_LIMIT": "20/minute;200/day",
    "CHATBOT_SIGNED_IN_TOKEN_LIMIT": "120000/day",
    "CHATBOT_STREAMS_PER_VISITOR": "1",
    "CHATBOT_MAX_CONCURRENT_STREAMS": "100",
}
#: Most models one compare may ask on a public URL unless CHATBOT_COMPARE_MAX_COLUMNS says otherwise.
PUBLIC_COMPARE_COLUMNS = 2
LOOPBACK_DEFAULTS = {
    "CHATBOT_RATE_LIMIT": "none",
    "CHATBOT_TOKEN_LIMIT": "none",
    "CHATBOT_SIGNED_IN_RATE_LIMIT": "none",
    "CHATBOT_SIGNED_IN_TOKEN_LIMIT": "none",
    "CHATBOT_STREAMS_PER_VISITOR": "0",
    "CHATBOT_MAX_CONCURRENT_STREAMS": "0",
}
#: Read by the derivations (provider, public, policy) rather than by one field each.
DERIVED_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHATBOT_PROVIDER", "GRADIO_SERVER_NAME", "CHATBOT_SHARE",
               *PUBLIC_DEFAULTS, "CHATBOT_API_RATE_LIMIT", "CHATBOT_API_TOKEN_LIMIT", "CHATBOT_DAILY_BUDGET_USD")


# ------------------------------------------------------------------ validators of one setting's text
# Each raises ValueError with a message that never repeats a secret; the setting's name is added by
# _config_error from the field's alias.


def _flag(raw: object) -> object:
    """1/0, true/false, yes/no, on/off (any case); anything else is refused."""
    if not isinstance(raw, str):
        return raw
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected 1/0, true/false, yes/no or on/off, got {raw!r}")


def _models(raw: object) -> object:
    if isinstance(raw, str):
        try:
            build_catalogue(raw)
        except ValueError as exc:
            raise ValueError(f"expected comma-separated ids or alias=id pairs ({exc})") from None
    return raw


def _api_tokens(raw: object) -> object:
    """``CHATBOT_API_TOKENS``: comma-separated bearer tokens, duplicates dropped."""
    if not isinstance(raw, str):
        return raw
    tokens = [t.strip() for t in raw.split(",") if t.strip()]
    if not tokens:
        raise ValueError("no token listed (expected comma-separated tokens)")
    for number, token in enumerate(tokens, 1):
        if not all(33 <= ord(c) < 127 for c in token):
            raise ValueError(f"token #{number} has a space or a character outside printable ASCII")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"token #{number} is shorter than {MIN_TOKEN_CHARS} characters; {_MAKE_ONE}")
    return tuple(dict.fromkeys(tokens))


def _auth(raw: object) -> object:
    """``CHATBOT_AUTH``: ``user:pass`` pairs, comma-separated."""
    if not isinstance(raw, str):
        return raw
    pairs = []
    for number, item in enumerate((i.strip() for i in raw.split(",")), 1):
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(f"entry #{number} is not user:password")
        pairs.append((user.strip(), password))
    return tuple(pairs)


def _browser_secret(raw: object) -> object:
    if isinstance(raw, str) and len(raw) < MIN_TOKEN_CHARS:
        raise ValueError(f"expected at least {MIN_TOKEN_CHARS} characters; {_MAKE_ONE}")
    return raw


def _redis_url(raw: object) -> object:
    if isinstance(raw, str) and not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return raw


Flag = Annotated[bool, BeforeValidator(_flag)]
Seconds = Annotated[float, Field(gt=0)]


def _env(name: str, default: Any = None, **constraints: Any) -> Any:
    """A field read from the environment variable ``name`` (also settable by field name in code)."""
    return Field(default, validation_alias=name, **constraints)


class Settings(BaseSettings):
    """Everything the app is configured with. Build with :meth:`Settings.load`; change a copy with
    ``settings.model_copy(update={...})``. Fields without an environment name are worked out by
    :func:`_derive` (provider, key, demo mode, public URL, policy) or are fixed caps."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", case_sensitive=True, validate_by_name=True, validate_by_alias=True,
        allow_inf_nan=False, arbitrary_types_allowed=True,  # Policy holds the limits library's items
    )

    # worked out by _derive from several variables
    api_key: SecretStr | None = None
    base_url: str = PROVIDERS["openai"].base_url
    provider: str | None = None
    demo: bool = True
    host: str = "127.0.0.1"
    share: bool = False
    public: bool = False
    policy: Policy = Field(default_factory=Policy)
    hf_oauth: bool = False
    # one variable each
    models: Annotated[str | None, BeforeValidator(_models)] = _env("CHATBOT_MODELS")
    allow_any_model: Flag = _env("CHATBOT_ALLOW_ANY_MODEL", False)
    system_prompt: str = _env("CHATBOT_SYSTEM_PROMPT", "You are a helpful assistant. Be concise and direct.")
    context_tokens: int | None = _env("CHATBOT_CONTEXT_TOKENS", ge=256)
    max_tokens: int = _env("CHATBOT_MAX_TOKENS", 4_096, ge=1)
    temperature: float | None = _env("CHATBOT_TEMPERATURE", ge=0, le=2)  # None: the provider's default
    chat_settings: Literal["edit", "fixed", "hidden"] = _env("CHATBOT_CHAT_SETTINGS", "edit")  # per chat
    connect_timeout: Seconds = _env("CHATBOT_CONNECT_TIMEOUT", 10.0)
    first_token_timeout: Seconds = _env("CHATBOT_FIRST_TOKEN_TIMEOUT", 120.0)
    idle_timeout: Seconds = _env("CHATBOT_IDLE_TIMEOUT", 60.0)
    reply_timeout: Seconds = _env("CHATBOT_REPLY_TIMEOUT", 600.0)
    max_retries: int = _env("CHATBOT_MAX_RETRIES", 2, ge=0)
    max_concurrency: int = _env("CHATBOT_MAX_CONCURRENCY", 512, ge=1)
    port: int = _env("GRADIO_SERVER_PORT", 7860, ge=0, le=65_535)
    db_path: str = _env("CHATBOT_DB", "data/switchboard.db")
    redis_url: Annotated[SecretStr | None, BeforeValidator(_redis_url)] = _env("REDIS_URL")
    api_tokens: Annotated[tuple[SecretStr, ...], BeforeValidator(_api_tokens)] = _env("CHATBOT_API_TOKENS", ())
    max_body_bytes: int = _env("CHATBOT_MAX_BODY_BYTES", 1_048_576, ge=1024)
    trusted_proxies: int = _env("CHATBOT_TRUSTED_PROXIES", 0, ge=0)  # 1 on Spaces (_derive)
    allow_user_key: Flag = _env("CHATBOT_ALLOW_USER_KEY", True)  # always on with CHATBOT_REQUIRE_USER_KEY
    require_user_key: Flag = _env("CHATBOT_REQUIRE_USER_KEY", False)
    auth: Annotated[tuple[tuple[str, SecretStr], ...], BeforeValidator(_auth)] = _env("CHATBOT_AUTH", ())
    live_models: Flag = _env("CHATBOT_LIVE_MODELS", True)
    models_timeout: float = _env("CHATBOT_MODELS_TIMEOUT", 3.0, ge=0)
    models_refresh: float = _env("CHATBOT_MODELS_REFRESH", 3_600.0, ge=0)
    max_upload_mb: float = _env("CHATBOT_MAX_UPLOAD_MB", 20.0, ge=0.01)
    browser_secret: Annotated[SecretStr | None, BeforeValidator(_browser_secret)] = _env("CHATBOT_BROWSER_SECRET")
    session_grace: float = _env("CHATBOT_SESSION_GRACE", 600.0, ge=0)
    compare_max_columns: int = _env("CHATBOT_COMPARE_MAX_COLUMNS", 4, ge=0, le=8)  # 0: Compare off; 2 public
    # caps without a variable of their own
    max_retry_wait: float = 5.0
    max_message_chars: int = 200_000
    max_history_messages: int = 5_000
    max_history_chars: int = 2_000_000

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what is passed in: :meth:`load` merges flags, environment and .env (``Settings()`` alone
        is the defaults, whatever the process environment holds)."""
        return (init_settings,)

    @classmethod
    def load(
        cls,
        argv: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = ".env",
    ) -> Settings:
        """Read flags, environment and ``.env``; raise :class:`ConfigError` (one line) on a bad value."""
        args = build_parser().parse_args(list(argv) if argv is not None else [])
        raw: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            raw.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        raw.update(os.environ if environ is None else environ)
        raw.update({name: str(value) for name, value in vars(args).items() if value is not None})
        # only the variables the settings read; a blank value is no value; values are trimmed
        raw = {name: value.strip() for name, value in raw.items() if name in _ENV_NAMES and value.strip()}
        try:
            return cls(**{**raw, **_derive(raw)})
        except ValidationError as exc:
            raise _config_error(exc) from None


#: Every environment name the settings read (for the help text).
_ENV_NAMES = frozenset(
    [str(f.validation_alias) for f in Settings.model_fields.values() if f.validation_alias] + list(DERIVED_ENV)
    + [p.key_env for p in PROVIDERS.values() if p.key_env] + ["SPACE_ID", "OAUTH_CLIENT_ID"]
)


def _derive(raw: Mapping[str, str]) -> dict[str, Any]:
    """From the variables as given (blank ones dropped), by field name: the provider, key and URL, demo
    mode, the bind, whether the app is public, and the defaults that follow from it."""
    require_user_key = _named(_flag, raw.get("CHATBOT_REQUIRE_USER_KEY", "0"), "CHATBOT_REQUIRE_USER_KEY")
    derived: dict[str, Any] = _connection(raw, require_user_key)
    host = raw.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if raw.get("SPACE_ID") else "127.0.0.1")
    share = _named(_flag, raw.get("CHATBOT_SHARE", "0"), "CHATBOT_SHARE")
    public = bool(share or raw.get("SPACE_ID") or not _is_loopback(host))
    derived.update(host=host, share=share, public=public, policy=_policy(raw.get, public),
                   hf_oauth=bool(raw.get("SPACE_ID") and raw.get("OAUTH_CLIENT_ID")))  # a Space with hf_oauth
    if "CHATBOT_MAX_TOKENS" not in raw:
        derived["max_tokens"] = PUBLIC_MAX_TOKENS if public else 4_096
    if "CHATBOT_COMPARE_MAX_COLUMNS" not in raw:  # a compare of N costs N replies: fewer on a public URL
        derived["compare_max_columns"] = PUBLIC_COMPARE_COLUMNS if public else 4
    if "CHATBOT_TRUSTED_PROXIES" not in raw and raw.get("SPACE_ID"):
        derived["trusted_proxies"] = 1
    if require_user_key:
        derived["CHATBOT_ALLOW_USER_KEY"] = "1"  # a visitor who must bring a key may
    return derived


def _connection(raw: Mapping[str, str], require_user_key: bool) -> dict[str, Any]:
    """Provider preset, base URL, API key and demo mode."""
    provider_name = raw.get("CHATBOT_PROVIDER")
    if provider_name is not None:
        provider_name = provider_name.lower()
        if provider_name not in PROVIDERS:
            raise ConfigError(f"CHATBOT_PROVIDER: expected one of {', '.join(PROVIDERS)}, got {provider_name!r}")
    else:  # no preset named: one whose own key variable is set, else the SDK's own default (OpenAI)
        keyed = [p.name for p in PROVIDERS.values() if p.key_env != "OPENAI_API_KEY" and raw.get(p.key_env or "")]
        provider_name = keyed[0] if len(keyed) == 1 else None
    provider = PROVIDERS[provider_name] if provider_name else None

    explicit_url = raw.get("OPENAI_BASE_URL")
    base_url = explicit_url or (provider or PROVIDERS["openai"]).base_url
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"OPENAI_BASE_URL: expected an http:// or https:// URL, got {base_url!r}")
    key = raw.get("OPENAI_API_KEY")
    if provider is not None and provider.key_env:
        key = raw.get(provider.key_env) or key
    keyless_ok = explicit_url is not None or (provider is not None and not provider.needs_key)
    demo = not key and not keyless_ok and not require_user_key
    if demo:
        base_url = DEMO_BASE_URL  # nothing is sent anywhere: the simulator answers in-process
    if not key and keyless_ok:
        key = PLACEHOLDER_KEY
    return {
        "api_key": SecretStr(key) if key else None, "base_url": base_url.rstrip("/"), "demo": demo,
        "provider": provider_name if not explicit_url else "custom",
    }


def _policy(get: Callable[[str], str | None], public: bool) -> Policy:
    defaults = PUBLIC_DEFAULTS if public else LOOPBACK_DEFAULTS

    def limits_of(name: str, like: str | None = None):  # noqa: ANN202 - ``like``: the setting it defaults to
        raw = get(name) or (get(like) or defaults[like] if like else defaults[name])
        try:
            return parse_limits(raw, name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def count(name: str) -> int:
        raw = get(name) or defaults[name]
        return 0 if raw.lower() == "none" else int(_number(raw, name, int, minimum=0))

    budget = get("CHATBOT_DAILY_BUDGET_USD")
    return Policy(
        rate=limits_of("CHATBOT_RATE_LIMIT"),
        tokens=limits_of("CHATBOT_TOKEN_LIMIT"),
        signed_in_rate=limits_of("CHATBOT_SIGNED_IN_RATE_LIMIT"),
        signed_in_tokens=limits_of("CHATBOT_SIGNED_IN_TOKEN_LIMIT"),
        api_rate=limits_of("CHATBOT_API_RATE_LIMIT", like="CHATBOT_RATE_LIMIT"),
        api_tokens=limits_of("CHATBOT_API_TOKEN_LIMIT", like="CHATBOT_TOKEN_LIMIT"),
        streams_per_visitor=count("CHATBOT_STREAMS_PER_VISITOR"),
        max_streams=count("CHATBOT_MAX_CONCURRENT_STREAMS"),
        daily_budget_usd=None if budget is None or budget.lower() == "none"
        else float(_number(budget, "CHATBOT_DAILY_BUDGET_USD", float, minimum=0.0)),
    )


def _number(raw: str, name: str, kind: type[int] | type[float], minimum: float) -> float:
    what = "a whole number" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # NaN fails too
        raise ConfigError(f"{name}: expected {what} of at least {minimum:g}, got {raw!r}")
    return value


def _named(check: Callable[[object], object], raw: str, name: str) -> Any:
    """``check(raw)``, its ValueError as a ConfigError naming the variable."""
    try:
        return check(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _config_error(exc: ValidationError) -> ConfigError:
    """The first problem as one line that starts with the variable's name and never shows a secret."""
    error = exc.errors(include_url=False)[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # raised by _derive: already names the variable
        return ConfigError(message)
    name = str(error["loc"][0])
    secret = name in _SECRET_NAMES
    if error["type"] != "value_error" and not secret and isinstance(error.get("input"), str):
        message = f"{message[0].lower()}{message[1:]}, got {error['input']!r}"
    return ConfigError(f"{name}: {message}")


_SECRET_NAMES = frozenset(
    str(f.validation_alias) for f in Settings.model_fields.values()
    if f.validation_alias and "SecretStr" in str(f.annotation)
)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    """The flags; each stores under its environment variable's name (a flag wins over the environment)."""
    own_keys = {p.key_env for p in PROVIDERS.values() if p.key_env != "OPENAI_API_KEY"}  # <PROVIDER>_API_KEY
    names = ", ".join(sorted(_ENV_NAMES - own_keys - {"OAUTH_CLIENT_ID"}))
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Switchboard: a chat app for any OpenAI-compatible API. "
        "Every flag has an environment variable; flags win over the environment, which wins over .env.",
        epilog=f"Environment: <PROVIDER>_API_KEY, {names}. See README.md.",
    )
    parser.add_argument("--provider", dest="CHATBOT_PROVIDER", choices=sorted(PROVIDERS),
                        help="provider preset (CHATBOT_PROVIDER)")
    parser.add_argument("--base-url", dest="OPENAI_BASE_URL",
                        help="OpenAI-compatible base URL; wins over --provider (OPENAI_BASE_URL)")
    parser.add_argument("--models", dest="CHATBOT_MODELS",
                        help="comma-separated ids or alias=id pairs (CHATBOT_MODELS)")
    parser.add_argument("--host", dest="GRADIO_SERVER_NAME",
                        help="address to bind (GRADIO_SERVER_NAME), default 127.0.0.1")
    parser.add_argument("--port", dest="GRADIO_SERVER_PORT", type=int,
                        help="port to bind (GRADIO_SERVER_PORT), default 7860")
    parser.add_argument("--share", dest="CHATBOT_SHARE", action="store_const", const="1",
                        help="open a Gradio share link (CHATBOT_SHARE)")
    return parser
