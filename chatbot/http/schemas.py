"""The HTTP API's request and response bodies (pydantic models; FastAPI validates and documents them), and
the error responses each route documents in the OpenAPI schema."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictStr

EXAMPLE: dict[str, JsonValue] = {"message": "¡Hola!", "model": "gpt-4.1-mini"}
EXAMPLE_JSON = json.dumps(EXAMPLE, ensure_ascii=False)


class ChatRequest(BaseModel):
    """A message to send. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [EXAMPLE]})

    message: StrictStr = Field(description="The text to send: not empty, not longer than the server accepts.")
    model: StrictStr | None = Field(
        None, description="A model alias or id from GET /models; leave out for the first one listed."
    )
    conversation_id: StrictStr | None = Field(
        None, description="Continue this conversation; leave out to start a new one (its id is returned)."
    )
    system: StrictStr | None = Field(None, description="A system prompt for this request instead of the server's "
                                     "(ignored when the operator fixed the settings).")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature; leave out for the default.")
    max_tokens: int | None = Field(None, ge=1, description="Most reply tokens; never more than the server's cap.")


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cost: float | None = Field(None, description="USD, when known.")
    cost_source: str = Field(description='"upstream" (the provider\'s figure), "catalogue" or "unknown".')


class ChatReply(BaseModel):
    reply: str
    conversation_id: str
    model: str = Field(description="The model id that answered.")
    usage: UsageOut | None
    finish_reason: str | None = None
    saved: bool = Field(True, description="False when the server could not store the reply (it retries).")


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable identifier, e.g. unknown_model, rate_limited, unauthorized.")
    message: str = Field(description="What went wrong and what to do, for a person.")
    retry_after: float | None = Field(None, description="Seconds to wait before trying again, when known.")


class ErrorOut(BaseModel):
    error: ErrorDetail
    conversation_id: str | None = Field(None, description="The conversation, when one was involved.")
    reply: str | None = Field(None, description="Text produced before a failure cut the reply, if any.")


class Prices(BaseModel):
    input: float | None
    output: float | None
    unit: str = "USD per million tokens"


class ModelInfo(BaseModel):
    name: str = Field(description="What to send as `model`: an alias or an id.")
    id: str
    context_window: int
    max_output: int | None
    prices: Prices
    reasoning: bool
    vision: bool


class ModelsOut(BaseModel):
    models: dict[str, str] = Field(description="Name (alias or id) to model id, as in the tutorial.")
    default: str
    available: list[ModelInfo]


class MessageOut(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    status: Literal["complete", "streaming", "interrupted"] = Field(
        description="interrupted: the reply was cut (error, disconnect, stop); content is what was produced."
    )
    created_at: str
    model: str | None = None
    error: str | None = Field(None, description="Why an interrupted reply ended (an error code).")
    finish_reason: str | None = None
    usage: UsageOut | None = None


class ConversationOut(BaseModel):
    conversation_id: str
    created_at: str
    updated_at: str
    messages: list[MessageOut]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body is not valid JSON."},
    401: {"model": ErrorOut, "description": "No token, or not one of CHATBOT_API_TOKENS."},
    403: {"model": ErrorOut, "description": "No CHATBOT_API_TOKENS on a non-loopback bind: the API is off."},
    413: {"model": ErrorOut, "description": "The body is larger than CHATBOT_MAX_BODY_BYTES."},
    422: {"model": ErrorOut, "description": "A field is missing, of the wrong type, or not acceptable."},
    503: {"model": ErrorOut, "description": "The conversation store is unavailable."},
}
CHAT_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorOut, "description": "No such conversation for this token."},
    429: {"model": ErrorOut, "description": "The provider is rate limiting; see Retry-After."},
    502: {"model": ErrorOut, "description": "The provider failed or refused the key."},
    504: {"model": ErrorOut, "description": "The provider did not answer in time."},
}
CONVERSATION_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorOut, "description": "No such conversation."},
}
