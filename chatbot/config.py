"""Settings: loaded once from CLI flags, the environment and an optional ``.env`` (in that order of
precedence), validated, and frozen. Modelled on Starlette's ``Config`` and ``Secret``: the environment is
injectable for tests and the API key is wrapped so that its ``repr`` never shows it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from .catalogue import Catalogue, build_catalogue
from .limits import Policy, parse_limits


class ConfigError(ValueError):
    """A setting has a value the app cannot use. The message is one line naming the setting."""


class Secret:
    """A string that does not show itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    key_env: str | None
    needs_key: bool = True


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("lemondata", "https://api.lemondata.cc/v1", "LEMONDATA_API_KEY"),
        Provider("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        Provider("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        Provider("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        Provider("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        Provider("ollama", "http://localhost:11434/v1", "OLLAMA_API_KEY", needs_key=False),
        Provider("lmstudio", "http://localhost:1234/v1", "LMSTUDIO_API_KEY", needs_key=False),
        Provider("vllm", "http://localhost:8000/v1", "VLLM_API_KEY", needs_key=False),
    )
}

#: Where demo mode's in-process simulator pretends to live (``.invalid`` never resolves).
DEMO_BASE_URL = "http://demo.invalid/v1"

#: Key used towards local servers that want none (the SDK insists on some string).
PLACEHOLDER_KEY = "not-needed"


@dataclass(frozen=True)
class Settings:
    """Everything the app is configured with. Build with :meth:`Settings.load`."""

    api_key: Secret | None = None
    base_url: str = PROVIDERS["openai"].base_url
    provider: str | None = None
    demo: bool = True
    models: str | None = None
    allow_any_model: bool = False
    system_prompt: str = "You are a helpful assistant. Be concise and direct."
    context_tokens: int | None = None
    max_tokens: int = 4_096
    connect_timeout: float = 10.0
    first_token_timeout: float = 120.0
    idle_timeout: float = 60.0
    reply_timeout: float = 600.0
    max_retries: int = 2
    max_retry_wait: float = 5.0
    max_message_chars: int = 200_000
    max_history_messages: int = 5_000
    max_history_chars: int = 2_000_000
    max_concurrency: int = 512
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    db_path: str = "data/switchboard.db"
    redis_url: Secret | None = None
    api_tokens: tuple[Secret, ...] = ()
    max_body_bytes: int = 1_048_576
    public: bool = False
    policy: Policy = field(default_factory=Policy)
    trusted_proxies: int = 0
    allow_user_key: bool = True
    require_user_key: bool = False
    auth: tuple[tuple[str, Secret], ...] = ()
    live_models: bool = True
    models_timeout: float = 3.0
    models_refresh: float = 3_600.0
    max_upload_mb: float = 20.0
    browser_secret: Secret | None = None
    session_grace: float = 600.0
    hf_oauth: bool = False
    catalogue: Catalogue = field(default_factory=lambda: build_catalogue(None), compare=False, repr=False)

    @classmethod
    def load(
        cls,
        argv: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = ".env",
    ) -> Settings:
        """Read flags, environment and ``.env``; raise :class:`ConfigError` on a bad value."""
        args = build_parser().parse_args(list(argv) if argv is not None else [])
        env: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        return _from_sources(args, env)


def _from_sources(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    def get(name: str, flag: object = None) -> str | None:
        if flag is not None:
            return str(flag)
        value = env.get(name)
        return value.strip() if value is not None and value.strip() else None

    provider_name = get("CHATBOT_PROVIDER", args.provider)
    if provider_name is not None:
        provider_name = provider_name.lower()
        if provider_name not in PROVIDERS:
            raise ConfigError(
                f"CHATBOT_PROVIDER: expected one of {', '.join(PROVIDERS)}, got {provider_name!r}"
            )
    else:  # no preset named: one whose own key variable is set, else the SDK's own default (OpenAI)
        keyed = [p.name for p in PROVIDERS.values() if p.key_env != "OPENAI_API_KEY" and get(p.key_env or "")]
        provider_name = keyed[0] if len(keyed) == 1 else None
    provider = PROVIDERS[provider_name] if provider_name else None

    explicit_url = get("OPENAI_BASE_URL", args.base_url)
    base_url = explicit_url or (provider or PROVIDERS["openai"]).base_url
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"OPENAI_BASE_URL: expected an http:// or https:// URL, got {base_url!r}")

    key = get("OPENAI_API_KEY")
    if provider is not None and provider.key_env:
        key = get(provider.key_env) or key
    keyless_ok = explicit_url is not None or (provider is not None and not provider.needs_key)
    require_user_key = _flag(get("CHATBOT_REQUIRE_USER_KEY"), "CHATBOT_REQUIRE_USER_KEY")
    demo = not key and not keyless_ok and not require_user_key
    if demo:
        base_url = DEMO_BASE_URL  # nothing is sent anywhere: the simulator answers in-process
    if not key and keyless_ok:
        key = PLACEHOLDER_KEY

    models = get("CHATBOT_MODELS", args.models)
    try:
        catalogue = build_catalogue(models)
    except ValueError as exc:
        raise ConfigError(f"CHATBOT_MODELS: expected comma-separated ids or alias=id pairs ({exc})") from None

    host = get("GRADIO_SERVER_NAME", args.host) or ("0.0.0.0" if env.get("SPACE_ID") else "127.0.0.1")
    share = bool(args.share) or _flag(get("CHATBOT_SHARE"), "CHATBOT_SHARE")
    public = share or bool(env.get("SPACE_ID")) or not _is_loopback(host)
    max_tokens = _number(get("CHATBOT_MAX_TOKENS"), "CHATBOT_MAX_TOKENS", int, minimum=1)
    return Settings(
        api_key=Secret(key) if key else None,
        base_url=base_url.rstrip("/"),
        provider=provider_name if not explicit_url else "custom",
        demo=demo,
        models=models,
        allow_any_model=_flag(get("CHATBOT_ALLOW_ANY_MODEL"), "CHATBOT_ALLOW_ANY_MODEL"),
        system_prompt=get("CHATBOT_SYSTEM_PROMPT") or Settings.system_prompt,
        context_tokens=_number(get("CHATBOT_CONTEXT_TOKENS"), "CHATBOT_CONTEXT_TOKENS", int, minimum=256),
        max_tokens=max_tokens or (PUBLIC_MAX_TOKENS if public else Settings.max_tokens),
        connect_timeout=_number(get("CHATBOT_CONNECT_TIMEOUT"), "CHATBOT_CONNECT_TIMEOUT", float)
        or Settings.connect_timeout,
        first_token_timeout=_number(get("CHATBOT_FIRST_TOKEN_TIMEOUT"), "CHATBOT_FIRST_TOKEN_TIMEOUT", float)
        or Settings.first_token_timeout,
        idle_timeout=_number(get("CHATBOT_IDLE_TIMEOUT"), "CHATBOT_IDLE_TIMEOUT", float)
        or Settings.idle_timeout,
        reply_timeout=_number(get("CHATBOT_REPLY_TIMEOUT"), "CHATBOT_REPLY_TIMEOUT", float)
        or Settings.reply_timeout,
        max_retries=_number(get("CHATBOT_MAX_RETRIES"), "CHATBOT_MAX_RETRIES", int, minimum=0)
        if get("CHATBOT_MAX_RETRIES") is not None
        else Settings.max_retries,
        max_concurrency=_number(get("CHATBOT_MAX_CONCURRENCY"), "CHATBOT_MAX_CONCURRENCY", int, minimum=1)
        or Settings.max_concurrency,
        host=host,
        port=_number(get("GRADIO_SERVER_PORT", args.port), "GRADIO_SERVER_PORT", int, minimum=0)
        if get("GRADIO_SERVER_PORT", args.port) is not None
        else Settings.port,
        share=share,
        db_path=get("CHATBOT_DB") or Settings.db_path,
        redis_url=_redis_url(get("REDIS_URL")),
        api_tokens=_api_tokens(get("CHATBOT_API_TOKENS")),
        max_body_bytes=_number(get("CHATBOT_MAX_BODY_BYTES"), "CHATBOT_MAX_BODY_BYTES", int, minimum=1024)
        or Settings.max_body_bytes,
        public=public,
        policy=_policy(get, public),
        trusted_proxies=_number(get("CHATBOT_TRUSTED_PROXIES"), "CHATBOT_TRUSTED_PROXIES", int, minimum=0)
        if get("CHATBOT_TRUSTED_PROXIES") is not None
        else (1 if env.get("SPACE_ID") else 0),
        allow_user_key=require_user_key or _flag(get("CHATBOT_ALLOW_USER_KEY") or "1", "CHATBOT_ALLOW_USER_KEY"),
        require_user_key=require_user_key,
        auth=_auth(get("CHATBOT_AUTH")),
        live_models=_flag(get("CHATBOT_LIVE_MODELS") or "1", "CHATBOT_LIVE_MODELS"),
        models_timeout=_number(get("CHATBOT_MODELS_TIMEOUT"), "CHATBOT_MODELS_TIMEOUT", float, minimum=0.0)
        if get("CHATBOT_MODELS_TIMEOUT") is not None
        else Settings.models_timeout,
        models_refresh=_number(get("CHATBOT_MODELS_REFRESH"), "CHATBOT_MODELS_REFRESH", float, minimum=0.0)
        if get("CHATBOT_MODELS_REFRESH") is not None
        else Settings.models_refresh,
        max_upload_mb=_number(get("CHATBOT_MAX_UPLOAD_MB"), "CHATBOT_MAX_UPLOAD_MB", float, minimum=0.01)
        or Settings.max_upload_mb,
        browser_secret=_browser_secret(get("CHATBOT_BROWSER_SECRET")),
        session_grace=_number(get("CHATBOT_SESSION_GRACE"), "CHATBOT_SESSION_GRACE", float, minimum=0.0)
        if get("CHATBOT_SESSION_GRACE") is not None
        else Settings.session_grace,
        hf_oauth=bool(env.get("SPACE_ID") and env.get("OAUTH_CLIENT_ID")),  # a Space with `hf_oauth: true`
        catalogue=catalogue,
    )


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
LOOPBACK_DEFAULTS = {
    "CHATBOT_RATE_LIMIT": "none",
    "CHATBOT_TOKEN_LIMIT": "none",
    "CHATBOT_SIGNED_IN_RATE_LIMIT": "none",
    "CHATBOT_SIGNED_IN_TOKEN_LIMIT": "none",
    "CHATBOT_STREAMS_PER_VISITOR": "0",
    "CHATBOT_MAX_CONCURRENT_STREAMS": "0",
}


def _policy(get, public: bool) -> Policy:  # noqa: ANN001 - the local getter of _from_sources
    defaults = PUBLIC_DEFAULTS if public else LOOPBACK_DEFAULTS

    def limits_of(name: str, like: str | None = None):  # noqa: ANN202 - ``like``: the setting it defaults to
        raw = get(name) or (get(like) or defaults[like] if like else defaults[name])
        try:
            return parse_limits(raw, name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def count(name: str) -> int:
        raw = get(name) or defaults[name]
        return 0 if raw.lower() == "none" else int(_number(raw, name, int, minimum=0) or 0)

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
        else float(_number(budget, "CHATBOT_DAILY_BUDGET_USD", float, minimum=0.0) or 0.0),
    )


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _auth(raw: str | None) -> tuple[tuple[str, Secret], ...]:
    """``CHATBOT_AUTH``: ``user:pass`` pairs, comma-separated. Errors never show a password."""
    if raw is None:
        return ()
    pairs = []
    for number, item in enumerate((i.strip() for i in raw.split(",")), 1):
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            raise ConfigError(f"CHATBOT_AUTH: entry #{number} is not user:password")
        pairs.append((user.strip(), Secret(password)))
    return tuple(pairs)


def _browser_secret(raw: str | None) -> Secret | None:
    """``CHATBOT_BROWSER_SECRET``: what the key of the saved chats in visitors' browsers derives from."""
    if raw is None:
        return None
    if len(raw) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"CHATBOT_BROWSER_SECRET: expected at least {MIN_TOKEN_CHARS} characters; make one with: "
            "python -c \"import secrets; print(secrets.token_urlsafe(32))\""
        )
    return Secret(raw)


#: Shortest API token accepted: a guessable token is worse than none (it looks like protection).
MIN_TOKEN_CHARS = 16


def _api_tokens(raw: str | None) -> tuple[Secret, ...]:
    """``CHATBOT_API_TOKENS``: comma-separated bearer tokens. Errors never show a token."""
    if raw is None:
        return ()
    tokens = [t.strip() for t in raw.split(",") if t.strip()]
    if not tokens:
        raise ConfigError("CHATBOT_API_TOKENS: no token listed (expected comma-separated tokens)")
    for number, token in enumerate(tokens, 1):
        if not all(33 <= ord(c) < 127 for c in token):
            raise ConfigError(
                f"CHATBOT_API_TOKENS: token #{number} has a space or a character outside printable ASCII"
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"CHATBOT_API_TOKENS: token #{number} is shorter than {MIN_TOKEN_CHARS} characters; make one "
                "with: python -c \"import secrets; print(secrets.token_urlsafe(32))\""
            )
    return tuple(Secret(t) for t in dict.fromkeys(tokens))


def _redis_url(raw: str | None) -> Secret | None:
    """``REDIS_URL`` (it may carry a password, so it is a Secret and errors never show it)."""
    if raw is None:
        return None
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL: expected a redis://, rediss:// or unix:// URL")
    return Secret(raw)


def _number(raw: str | None, name: str, kind: type, minimum: float = 0.001) -> int | float | None:
    if raw is None:
        return None
    what = "a whole number" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected {what} of at least {minimum:g}, got {raw!r}") from None
    if value < minimum or value != value:  # NaN fails the second test
        raise ConfigError(f"{name}: expected {what} of at least {minimum:g}, got {raw!r}")
    return value


def _flag(raw: str | None, name: str) -> bool:
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected 1/0, true/false, yes/no or on/off, got {raw!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Switchboard: a chat app for any OpenAI-compatible API. "
        "Every flag has an environment variable; flags win over the environment, which wins over .env.",
        epilog="Environment: OPENAI_API_KEY, OPENAI_BASE_URL, CHATBOT_PROVIDER, <PROVIDER>_API_KEY, "
        "CHATBOT_MODELS, CHATBOT_ALLOW_ANY_MODEL, CHATBOT_SYSTEM_PROMPT, CHATBOT_CONTEXT_TOKENS, "
        "CHATBOT_MAX_TOKENS, CHATBOT_CONNECT_TIMEOUT, CHATBOT_FIRST_TOKEN_TIMEOUT, CHATBOT_IDLE_TIMEOUT, "
        "CHATBOT_MAX_RETRIES, CHATBOT_MAX_CONCURRENCY, GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, "
        "CHATBOT_LIVE_MODELS, CHATBOT_MODELS_TIMEOUT, CHATBOT_MODELS_REFRESH, CHATBOT_MAX_UPLOAD_MB, "
        "CHATBOT_BROWSER_SECRET, CHATBOT_SESSION_GRACE, "
        "CHATBOT_SHARE, CHATBOT_DB, REDIS_URL, CHATBOT_API_TOKENS, CHATBOT_MAX_BODY_BYTES. See README.md.",
    )
    parser.add_argument("--provider", choices=sorted(PROVIDERS), help="provider preset (CHATBOT_PROVIDER)")
    parser.add_argument("--base-url", help="OpenAI-compatible base URL; wins over --provider (OPENAI_BASE_URL)")
    parser.add_argument("--models", help="comma-separated ids or alias=id pairs (CHATBOT_MODELS)")
    parser.add_argument("--host", help="address to bind (GRADIO_SERVER_NAME), default 127.0.0.1")
    parser.add_argument("--port", type=int, help="port to bind (GRADIO_SERVER_PORT), default 7860")
    parser.add_argument("--share", action="store_true", default=None, help="open a Gradio share link")
    return parser
