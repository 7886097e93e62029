"""POST /pubsub/push: the Cloud Run push endpoint of the log subscriber.

Pub/Sub acks a push on any 2xx and retries anything else with backoff. So: 204 once the event is
stored (or was already — redelivery is harmless); 400 for poison, which the dead-letter policy
then parks after its delivery attempts; 503 while the database is down, to be retried.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from guardrail.errors import PUSH_ERROR_RESPONSES, LogStoreUnavailable, PoisonEvent
from guardrail.logs.events import PoisonMessage, decode_message
from guardrail.subscriber.store import LogStoreDown, report_poison

router = APIRouter(tags=["subscriber"], responses=PUSH_ERROR_RESPONSES)


class PushMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    data: str | None = None
    attributes: dict[str, str] | None = None
    message_id: str = Field("", alias="messageId")


class PushEnvelope(BaseModel):
    """The body Pub/Sub posts to a push endpoint."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message: PushMessage
    subscription: str = ""
    delivery_attempt: int | None = Field(None, alias="deliveryAttempt")


@router.post("/pubsub/push", status_code=204, response_class=Response)
async def push(envelope: PushEnvelope, request: Request,
               authorization: Annotated[str | None, Header()] = None) -> Response:
    """Store one pushed judgement event (idempotent by event id)."""
    state: Any = request.app.state.subscriber
    if state.verifier is not None:
        await state.verifier.verify(authorization)
    msg = envelope.message
    try:
        row = decode_message(msg.data)
        await state.batcher.submit(row)
    except PoisonMessage as exc:
        report_poison(str(exc), message_id=msg.message_id, attributes=msg.attributes,
                      delivery_attempt=envelope.delivery_attempt, max_attempts=state.max_attempts)
        raise PoisonEvent(str(exc), param="message.data") from exc
    except LogStoreDown as exc:
        raise LogStoreUnavailable("the judgement-log database is unavailable; redeliver later",
                                  retry_after=10) from exc
    return Response(status_code=204)
