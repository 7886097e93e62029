"""Pull mode of the log subscriber (local use and tests): pull, store, ack; poison is nacked.

A nacked message is redelivered at once and each delivery counts, so a poison message reaches
the subscription's dead-letter topic after `maxDeliveryAttempts` pulls without slowing the rest.
During a database outage everything pulled is nacked and the loop backs off.
"""

from __future__ import annotations

import asyncio
from typing import Any

from guardrail.adapters.pubsub import PubSubClient, PubSubError, Received
from guardrail.logs.events import PoisonMessage, decode_message
from guardrail.observability import log
from guardrail.subscriber.store import EventStore, LogStoreDown, report_poison


async def pull_once(client: PubSubClient, subscription: str, store: EventStore, *, max_messages: int,
                    max_attempts: int) -> int:
    """Pull one batch and settle every message in it; returns how many were pulled.

    Raises:
        PubSubError: the pull itself failed.
        LogStoreDown: the database is down (the batch has been nacked).
    """
    msgs = await client.pull(subscription, max_messages=max_messages)
    valid: list[tuple[Received, dict[str, Any]]] = []
    nack: list[str] = []
    for m in msgs:
        try:
            valid.append((m, decode_message(m.data)))
        except PoisonMessage as exc:
            report_poison(str(exc), message_id=m.message_id, attributes=m.attributes,
                          delivery_attempt=m.delivery_attempt, max_attempts=max_attempts)
            nack.append(m.ack_id)
    try:
        outcomes = await store.store([row for _, row in valid])
    except LogStoreDown:
        await client.nack(subscription, [m.ack_id for m in msgs])
        raise
    ack = []
    for (m, _), outcome in zip(valid, outcomes, strict=True):
        if outcome is None:
            ack.append(m.ack_id)
        else:
            report_poison(str(outcome), message_id=m.message_id, attributes=m.attributes,
                          delivery_attempt=m.delivery_attempt, max_attempts=max_attempts)
            nack.append(m.ack_id)
    await client.ack(subscription, ack)
    await client.nack(subscription, nack)
    return len(msgs)


async def pull_forever(client: PubSubClient, subscription: str, store: EventStore, *, max_messages: int = 200,
                       max_attempts: int = 5, idle_s: float = 0.2, max_backoff_s: float = 10.0) -> None:
    """Run `pull_once` until cancelled, backing off while Pub/Sub or the database is down."""
    backoff = 0.5
    while True:
        try:
            n = await pull_once(client, subscription, store, max_messages=max_messages, max_attempts=max_attempts)
        except (PubSubError, LogStoreDown) as exc:
            log.warning("log subscriber: pull round failed; backing off",
                        extra={"fields": {"error": str(exc)[:200], "backoff_s": backoff}})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        backoff = 0.5
        if n == 0:
            await asyncio.sleep(idle_s)
