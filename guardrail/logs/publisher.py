"""Judgement-event publishers: a bounded in-process queue drained in batches into a delivery function.

`publish` never blocks or fails the request. Events wait in a bounded queue; a background task
hands them in batches to `deliver`: the log writer itself (embedded default) or a Pub/Sub topic
(`guardrail.adapters.pubsub`). When delivery fails (database or Pub/Sub down) or the queue is
full, the events go to an append-only spool file under the data dir, which is replayed when
delivery works again and at the next start, so no judgement log is lost. Delivery is
at-least-once; the writer is idempotent by event id, so a replayed event never becomes two rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from guardrail.observability import LOG_DELIVERED, LOG_DELIVERY_ERRORS, PUBLISH_QUEUE, SPOOL_DEPTH, log
from guardrail.ports import JudgementEvent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """Append-only JSONL file of events awaiting delivery.

    With several worker processes (`GUARDRAIL_WORKERS`) each appends to its own file
    (`events.<pid>.jsonl`); `take` also adopts the files of processes that are gone, and files a
    crash left half-taken, so nothing spooled by any process is ever stranded.
    """

    def __init__(self, path: Path, *, per_process: bool = False) -> None:
        self.base = path
        self.path = path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}") if per_process else path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, events: list[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            for e in events:
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
            f.flush()
        SPOOL_DEPTH.set(self.count())

    def _claimable(self) -> list[Path]:
        found = [self.path] if self.path.exists() else []
        for p in sorted(self.base.parent.glob(f"{self.base.stem}*{self.base.suffix}")):
            if p == self.path:
                continue
            owner = next((int(part) for part in p.name.split(".")[1:-1] if part.isdigit()), None)
            if owner is None or owner == os.getpid() or not _alive(owner):
                found.append(p)
        return found

    def pending(self) -> bool:
        return bool(self._claimable())

    def take(self) -> list[dict[str, Any]]:
        """Read (and remove) every spooled event this process may take; the caller re-appends on failure."""
        out: list[dict[str, Any]] = []
        for p in self._claimable():
            taking = self.base.with_name(f"{self.base.stem}.{os.getpid()}.taking{self.base.suffix}")
            try:
                p.replace(taking)  # atomic: of two processes adopting the same file, one wins
            except FileNotFoundError:
                continue
            out += [json.loads(line) for line in taking.read_text(encoding="utf-8").splitlines() if line.strip()]
            taking.unlink()
        return out

    def count(self) -> int:
        try:
            with self.path.open("rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0


_EVENT_FIELDS = tuple(f.name for f in fields(JudgementEvent))

Deliver = Callable[[list[dict[str, Any]]], Awaitable[object]]
"""Delivers one batch of event rows or raises; must be safe to repeat (idempotent downstream)."""


class QueuedPublisher:
    """An `EventPublisher` that batches events into `deliver`, spooling what cannot be delivered."""

    def __init__(self, deliver: Deliver, spool: Spool, *, sink: str, batch_size: int = 200,
                 max_queue: int = 50_000, retry_s: float = 1.0, linger_s: float = 0.05) -> None:
        self._deliver = deliver
        self.sink = sink
        self._spool = spool
        self._batch = batch_size
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
        self._retry_s = retry_s
        self._linger_s = linger_s
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[dict[str, Any]] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="judgement-log-writer")

    def publish(self, event: JudgementEvent) -> None:
        # Shallow: the event is not touched after publishing, and asdict's deep copy is per-request CPU.
        row = {name: getattr(event, name) for name in _EVENT_FIELDS}
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            self._spool.append([row])
        PUBLISH_QUEUE.set(self._queue.qsize())

    def depth(self) -> int:
        return self._queue.qsize()

    async def _write(self, rows: list[dict[str, Any]]) -> bool:
        try:
            await self._deliver(rows)
        except Exception as exc:
            LOG_DELIVERY_ERRORS.labels(self.sink).inc()
            log.warning("judgement-log delivery failed; spooling",
                        extra={"fields": {"sink": self.sink, "error": repr(exc)[:300], "n": len(rows)}})
            self._spool.append(rows)
            return False
        LOG_DELIVERED.labels(self.sink).inc(len(rows))
        return True

    async def _replay_spool(self) -> None:
        rows = self._spool.take()
        for i in range(0, len(rows), self._batch):
            if not await self._write(rows[i:i + self._batch]):
                self._spool.append(rows[i + self._batch:])
                break
        SPOOL_DEPTH.set(self._spool.count())

    async def _run(self) -> None:
        await self._replay_spool()
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 a cancel that lands inside
                # wait_for(queue.get()) can be lost, and shutdown then waits forever.
                async with asyncio.timeout(self._retry_s * 5):
                    first = await self._queue.get()
            except TimeoutError:
                if self._spool.pending():  # idle: retry what an outage left behind
                    await self._replay_spool()
                continue
            rows = [first]
            # In flight from here: a shutdown cancelling the linger below must still spool `rows`.
            self._inflight = rows
            if self._queue.qsize() < self._batch - 1:
                # Let a batch gather: a delivery (transaction or publish call) costs far more than an
                # event, and nobody waits on the log. Under load this turns ~3-event into full batches.
                await asyncio.sleep(self._linger_s)
            while len(rows) < self._batch and not self._queue.empty():
                rows.append(self._queue.get_nowait())
            PUBLISH_QUEUE.set(self._queue.qsize())
            ok = await self._write(rows)
            self._inflight = None
            if ok:
                if self._spool.pending():
                    await self._replay_spool()
            else:
                await asyncio.sleep(self._retry_s)

    async def flush(self, timeout_s: float) -> None:
        """Drain the queue (waiting up to timeout_s), then spool whatever is left and stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (not self._queue.empty() or self._inflight) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # A batch cut off mid-write is spooled too; writes are idempotent, so a batch that did
        # reach the table before the cancel is not duplicated when the spool is replayed.
        left: list[dict[str, Any]] = list(self._inflight or [])
        self._inflight = None
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        if left:
            self._spool.append(left)


class NullPublisher:
    """Drops every event: `GUARDRAIL_JUDGEMENT_LOG=off` (benchmarks of the logging cost)."""

    def start(self) -> None:
        return None

    def publish(self, event: JudgementEvent) -> None:
        return None

    def depth(self) -> int:
        return 0

    async def flush(self, timeout_s: float) -> None:
        return None
