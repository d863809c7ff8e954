"""The provider presets (``CHATBOT_PROVIDER``): each one's base URL and the variable holding its own key."""

from __future__ import annotations

from dataclasses import dataclass


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
