"""Strict validation of events against the official ``openai`` SDK's GA event unions.

The SDK's pydantic models accept unknown keys silently, so after validating against the
discriminated union we walk every model's ``model_extra`` and reject anything it holds.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Annotated, Any

from openai.types.realtime import (
    RealtimeClientEvent,
    RealtimeServerEvent,
    RealtimeSessionCreateResponse,
)
from pydantic import BaseModel, Field, TypeAdapter

# Server events may carry this extra field on deltas (see the protocol reference).
_TOLERATED_EXTRAS = frozenset({"obfuscation"})
# The live server's session objects carry these; the SDK's event models type the session as
# the *request* object, which lacks them (see validate_server_event).
_SESSION_ONLY = ("id", "object", "expires_at")


def _union_members(union: Any) -> tuple[Any, ...]:
    # RealtimeClientEvent is Annotated[Union[...], PropertyInfo(discriminator="type")]
    inner = typing.get_args(union)[0]
    return typing.get_args(inner)


_client_adapter: TypeAdapter[Any] = TypeAdapter(
    Annotated[typing.Union[_union_members(RealtimeClientEvent)], Field(discriminator="type")]  # noqa: UP007
)
_server_adapter: TypeAdapter[Any] = TypeAdapter(
    Annotated[typing.Union[_union_members(RealtimeServerEvent)], Field(discriminator="type")]  # noqa: UP007
)


class StrictValidationError(AssertionError):
    """The event does not match the SDK's types, or holds keys the SDK does not know."""


def _extras(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            if key not in _TOLERATED_EXTRAS:
                yield f"{path}.{key}" if path else key
        for name in type(value).model_fields:
            yield from _extras(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, (list, tuple)):
        for i, member in enumerate(value):
            yield from _extras(member, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, member in value.items():
            yield from _extras(member, f"{path}.{key}")


def _validate(adapter: TypeAdapter[Any], event: dict[str, Any]) -> BaseModel:
    try:
        model = adapter.validate_python(event)
    except Exception as exc:  # pydantic.ValidationError, with one precise message
        raise StrictValidationError(f"{event.get('type')!r}: {exc}") from exc
    unknown = list(_extras(model, ""))
    if unknown:
        raise StrictValidationError(f"{event.get('type')!r}: keys unknown to the SDK: {unknown}")
    assert isinstance(model, BaseModel)
    return model


def validate_client_event(event: dict[str, Any]) -> BaseModel:
    """Validate one client event (a dict as sent on the wire) strictly."""
    return _validate(_client_adapter, event)


def validate_server_event(event: dict[str, Any]) -> BaseModel:
    """Validate one server event (a dict as received from the wire) strictly.

    The SDK types ``session.created/updated.session`` as the session *request*, which has
    no ``id``, ``object`` or ``expires_at``; the live server sends them. So the session is
    checked strictly against the SDK's session *response* model, and the event against the
    union without those three keys.
    """
    if event.get("type") in ("session.created", "session.updated") and isinstance(
        event.get("session"), dict
    ):
        session = event["session"]
        try:
            response_model = RealtimeSessionCreateResponse.model_validate(session)
        except Exception as exc:
            raise StrictValidationError(f"{event['type']!r} session: {exc}") from exc
        unknown = list(_extras(response_model, "session"))
        if unknown:
            raise StrictValidationError(f"session keys unknown to the SDK: {unknown}")
        stripped = {k: v for k, v in session.items() if k not in _SESSION_ONLY}
        return _validate(_server_adapter, {**event, "session": stripped})
    return _validate(_server_adapter, event)
