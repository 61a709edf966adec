"""Request bodies of the OpenAI-compatible surfaces, turned into the one `TaskCreate`.

Both surfaces become ordinary tasks: the text goes through `TaskCreate` (the same limits,
surrogate and emptiness checks as `POST /v1/tasks`), and its validation errors are renamed
back to the fields the client sent (`messages` -> `input`, `session_id` -> `user`...).

Unknown fields are ignored, as OpenAI-compatible servers commonly do: clients send sampling
options (`temperature`, `max_tokens`...) by default, and V1 (an agent) decides those itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from app.errors import ApiError
from app.schemas import NOT_BLANK, InputLimits, MetadataValue, SessionId, TaskCreate

MODEL_PATTERN = r"^openclaw(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$"
Model = Annotated[str, StringConstraints(pattern=MODEL_PATTERN)]
TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
ROLES = {"developer": "system", "system": "system", "user": "user", "assistant": "assistant"}


class InvalidRequest(Exception):
    """Validation errors in pydantic's shape, with locations as the client named them."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid request")
        self.errors = errors


def agent_of(model: str, header_agent: str | None) -> str | None:
    """`openclaw/<agent>` names the agent (V1's rule; its `x-openclaw-agent-id` header
    wins); plain `openclaw` means the default agent."""
    if header_agent:
        return header_agent
    return model.partition("/")[2] or None


def part_text(content: str | list[dict[str, Any]] | None, where: str) -> str:
    """A message's text: a string, or the text parts of a content list joined."""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content or []):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str) or kind not in TEXT_PARTS:
            raise ApiError(422, "invalid_request", f"{where}.content.{j}: only text parts are "
                           "supported (type text, input_text or output_text)")  # fmt: skip
        text = part.get("text")
        if not isinstance(text, str):
            raise ApiError(422, "invalid_request", f"{where}.content.{j}.text: must be a string")
        texts.append(text)
    return "".join(texts)


def build_task(
    fields: dict[str, Any], renames: dict[str, str], offset: int = 0, single: bool = False
) -> TaskCreate:
    """`TaskCreate` from `fields`; its errors name the client's fields: `renames`, and a
    message index i is the client's i - offset (index 0 is `instructions` when offset is 1;
    with `single`, the one message is the client's whole field)."""
    try:
        return TaskCreate.model_validate(fields)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        for err in exc.errors(include_url=False, include_input=False):
            loc: list[Any] = list(err.get("loc", ()))
            if loc and loc[0] == "messages" and len(loc) > 1 and isinstance(loc[1], int):
                index = loc[1] - offset
                if index < 0:
                    loc = ["instructions"]
                elif single:
                    loc = [renames["messages"]]
                else:
                    loc = [renames["messages"], index, *loc[2:]]
            elif loc and isinstance(loc[0], str):
                loc[0] = renames.get(loc[0], loc[0])
            errors.append({**err, "loc": tuple(loc)})
        raise InvalidRequest(errors) from None


def count_first(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Too many messages is a 413 counted before any item is validated (as in TaskCreate):
    a body of 100,000 bad items must not become 100,000 errors."""
    if isinstance(value, list) and len(value) > InputLimits.max_messages:
        raise PydanticCustomError(
            "too_many_messages",
            "has {count} entries; the limit is {limit} (MAX_MESSAGES)",
            {"count": len(value), "limit": InputLimits.max_messages},
        )
    return handler(value)


# What validation accepts, said in the schema: non-blank text, or a non-empty list of text
# parts each with non-blank text (`part_text` and the task's own checks refuse the rest).
_TEXT = {"type": "string", "pattern": NOT_BLANK}
_PARTS = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"enum": sorted(TEXT_PARTS)}, "text": _TEXT},
    },
}
Content = Annotated[
    str | list[dict[str, Any]], WithJsonSchema({"anyOf": [_TEXT, _PARTS]}, mode="validation")
]
Text = Annotated[str, WithJsonSchema(_TEXT, mode="validation")]
# A task needs a user message to send V1 (V1 answers 400 without one): say so in the schema.
HAS_USER: JsonDict = {
    "contains": {"type": "object", "required": ["role"], "properties": {"role": {"const": "user"}}}
}


class ChatInMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content  # every message carries text here (the task is made of them)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionCreate(BaseModel):
    """POST /v1/chat/completions: V1's request, queued as a task (session from `user`)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"model": "openclaw", "messages": [{"role": "user", "content": "Say hello"}]},
        {"model": "openclaw", "stream": True, "stream_options": {"include_usage": True},
         "user": "conv-42", "messages": [{"role": "system", "content": "Be brief"},
                                         {"role": "user", "content": "Say hello"}]},
    ]})  # fmt: skip
    model: Model = Field(description="`openclaw` (default agent) or `openclaw/<agent id>`.")
    messages: list[ChatInMessage] = Field(min_length=1, json_schema_extra=HAS_USER)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: SessionId | None = Field(None, description="Conversation: runs in order, one at a time.")
    metadata: dict[str, MetadataValue] | None = None

    _count = field_validator("messages", mode="wrap")(count_first)

    def task(self, header_agent: str | None) -> TaskCreate:
        messages = [
            {"role": ROLES.get(m.role, m.role), "content": part_text(m.content, f"messages.{i}")}
            for i, m in enumerate(self.messages)
        ]
        fields = {
            "messages": messages,
            "agent_id": agent_of(self.model, header_agent),
            "session_id": self.user,
            "metadata": self.metadata,
        }
        return build_task(fields, {"messages": "messages", "session_id": "user",
                                   "agent_id": "model"})  # fmt: skip

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"]
    content: Content


class ConversationRef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: SessionId


class ResponseCreate(BaseModel):
    """POST /v1/responses. The task's session is `conversation` if given, else `user`."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"model": "openclaw", "input": "Say hello", "background": True},
        {"model": "openclaw", "input": [{"role": "user", "content": "Say hello"}],
         "instructions": "Be brief", "conversation": "conv-42", "stream": True,
         "metadata": {"ticket": 7}},
    ]})  # fmt: skip
    model: Model = Field(description="`openclaw` (default agent) or `openclaw/<agent id>`.")
    input: Text | Annotated[list[InputMessage], Field(json_schema_extra=HAS_USER)]
    instructions: Text | None = None  # a system message: not blank, as every message
    background: StrictBool = False
    stream: StrictBool = False
    conversation: SessionId | ConversationRef | None = None
    user: SessionId | None = None
    metadata: dict[str, MetadataValue] | None = None

    _count = field_validator("input", mode="wrap")(count_first)

    @property
    def session_id(self) -> str | None:
        if isinstance(self.conversation, ConversationRef):
            return self.conversation.id
        return self.conversation or self.user

    def task(self, header_agent: str | None) -> TaskCreate:
        chat: list[dict[str, str]] = []
        if self.instructions is not None:
            chat.append({"role": "system", "content": self.instructions})
        if isinstance(self.input, str):
            chat.append({"role": "user", "content": self.input})
        else:
            chat += [
                {"role": ROLES[m.role], "content": part_text(m.content, f"input.{i}")}
                for i, m in enumerate(self.input)
            ]
        session = "conversation" if self.conversation is not None else "user"
        fields = {
            "messages": chat,
            "agent_id": agent_of(self.model, header_agent),
            "session_id": self.session_id,
            "metadata": self.metadata,
        }
        renames = {"messages": "input", "session_id": session, "agent_id": "model"}
        offset = 1 if self.instructions is not None else 0
        return build_task(fields, renames, offset, single=isinstance(self.input, str))
