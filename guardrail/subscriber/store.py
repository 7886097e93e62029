"""Storing pulled or pushed judgement events: batched inserts, poison isolated, outages told apart.

A batch insert that fails is retried row by row, so one event the database refuses cannot hold
back the others. A refusal of the row itself (bad data) makes that event poison; anything else
(connection refused, pool timeout, a database restarting) is an outage, and the whole batch goes
back to Pub/Sub to be redelivered later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import exc as sa_exc

from guardrail.logs.events import PoisonMessage
from guardrail.logs.writer import JudgementWriter
from guardrail.observability import SUBSCRIBER_EVENTS, log

_ROW_REFUSALS = (sa_exc.DataError, sa_exc.IntegrityError)


class LogStoreDown(RuntimeError):
    """The log database could not be reached; the events should be redelivered later."""


class EventStore:
    """Inserts event rows idempotently (by event id) and reports a per-row outcome."""

    def __init__(self, writer: JudgementWriter) -> None:
        self._writer = writer

    async def store(self, rows: Sequence[dict[str, Any]]) -> list[PoisonMessage | None]:
        """None for each row stored (or already stored), PoisonMessage for each refused row.

        Raises:
            LogStoreDown: the database is unreachable; nothing can be said about any row.
        """
        if not rows:
            return []
        try:
            new = await self._writer.write(list(rows))
        except _ROW_REFUSALS as exc:
            if len(rows) == 1:
                return [PoisonMessage(f"the database refused the event ({exc.__class__.__name__})")]
            outcomes: list[PoisonMessage | None] = []
            for row in rows:  # isolate the refused rows; the others are stored one by one
                outcomes.extend(await self.store([row]))
            return outcomes
        except Exception as exc:
            raise LogStoreDown(f"log database unavailable: {exc.__class__.__name__}") from exc
        SUBSCRIBER_EVENTS.labels("stored").inc(new)
        SUBSCRIBER_EVENTS.labels("duplicate").inc(len(rows) - new)
        return [None] * len(rows)


class BatchingStore:
    """Gathers rows submitted by concurrent push requests into one insert (push delivers one per request)."""

    def __init__(self, store: EventStore, *, max_batch: int = 200, linger_s: float = 0.005) -> None:
        self._store = store
        self._max = max_batch
        self._linger_s = linger_s
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="subscriber-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():  # the push requests still waiting get a 503 and are redelivered
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(LogStoreDown("subscriber shutting down"))

    async def submit(self, row: dict[str, Any]) -> None:
        """Returns once the row is stored; raises PoisonMessage or LogStoreDown."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((row, fut))
        await fut

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(self._linger_s)  # let concurrent pushes join this insert
            while len(batch) < self._max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                outcomes = await self._store.store([row for row, _ in batch])
            except LogStoreDown as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            except Exception as exc:  # never let the loop die: the requests get a 503
                log.exception("subscriber batch failed")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(LogStoreDown(repr(exc)))
                continue
            for (_, fut), outcome in zip(batch, outcomes, strict=True):
                if fut.done():
                    continue
                if outcome is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(outcome)


def report_poison(reason: str, *, message_id: str, attributes: dict[str, str] | None, delivery_attempt: int | None,
                  max_attempts: int) -> None:
    """One clear log line per refused delivery (never the event body: it may hold judged text)."""
    attrs = attributes or {}
    SUBSCRIBER_EVENTS.labels("poison").inc()
    if delivery_attempt is not None and delivery_attempt > max_attempts:
        tail = (f"delivery attempt {delivery_attempt} is past the dead-letter threshold {max_attempts}: does the "
                "subscription have a dead-letter policy (and GUARDRAIL_PUBSUB_MAX_DELIVERY_ATTEMPTS its value)?")
    elif delivery_attempt == max_attempts:
        tail = "this was the last attempt: Pub/Sub now moves it to the dead-letter topic"
    else:
        tail = f"Pub/Sub redelivers it and moves it to the dead-letter topic after {max_attempts} delivery attempts"
    log.warning(
        f"poison judgement event refused; {tail}",
        extra={"fields": {"reason": reason, "message_id": message_id, "event_id": attrs.get("event_id"),
                          "tenant_id": attrs.get("tenant_id"), "delivery_attempt": delivery_attempt,
                          "max_delivery_attempts": max_attempts}})
