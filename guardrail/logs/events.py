"""The judgement event on the wire: one Pub/Sub message per judgement, validated on arrival.

The message `data` is the event as UTF-8 JSON; attributes carry the event id (the idempotency
key of the log table), the tenant and the schema version, so operators can filter a
dead-letter subscription without decoding bodies. A message that does not decode into a valid
event is *poison*: retrying cannot help, so the subscriber refuses it and Pub/Sub's
dead-letter policy parks it after the configured delivery attempts.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EVENT_SCHEMA = "judgement.v1"


class PoisonMessage(ValueError):
    """A message that can never be stored (undecodable, or not a valid judgement event)."""


class JudgementEventIn(BaseModel):
    """What the log writer accepts; bounds match the `judgements` table so bad rows fail here, not in SQL."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=40)
    tenant_id: str = Field(min_length=1, max_length=32)
    api_key_id: str | None = Field(None, max_length=32)
    direction: Literal["input", "output"]
    flagged: bool
    flagged_categories: list[str] = Field(default_factory=list)
    scores: dict[str, Any] = Field(default_factory=dict)
    model: str = Field(max_length=200)
    latency_ms: float
    cached: bool = False
    text: str | None = None
    prompt: str | None = None
    text_sha256: str = Field(min_length=1, max_length=64)
    text_mode: Literal["full", "masked", "hash"] = "full"
    reason: str | None = None
    created_at: datetime


def encode_message(row: dict[str, Any]) -> dict[str, Any]:
    """One Pub/Sub REST message for an event row (as produced by `dataclasses.asdict(JudgementEvent)`)."""
    data = json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()
    return {"data": base64.b64encode(data).decode(),
            "attributes": {"event_id": str(row["id"]), "tenant_id": str(row["tenant_id"]), "schema": EVENT_SCHEMA}}


def decode_message(data_b64: str | None) -> dict[str, Any]:
    """The event row inside a message's base64 `data`.

    Raises:
        PoisonMessage: the data is missing, not base64/UTF-8 JSON, or not a valid judgement event.
    """
    if not data_b64:
        raise PoisonMessage("message has no data")
    try:
        raw = json.loads(base64.b64decode(data_b64, validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoisonMessage(f"data is not base64 UTF-8 JSON ({exc.__class__.__name__})") from exc
    if not isinstance(raw, dict):
        raise PoisonMessage("data is not a JSON object")
    try:
        event = JudgementEventIn.model_validate(raw)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:5])
        raise PoisonMessage(f"not a valid judgement event (fields: {fields})") from exc
    return event.model_dump()
