"""Google Cloud Pub/Sub over its REST API, with httpx.

REST rather than the gRPC client library: it runs on our own event loop with timeouts we choose,
and the same code talks to the emulator (`PUBSUB_EMULATOR_HOST`, plain HTTP, no credentials) and
to pubsub.googleapis.com (an OAuth token from Application Default Credentials — on Cloud Run the
service account's — refreshed in a worker thread).

Exceptions: every failure is a `PubSubError` carrying the HTTP status (None for a transport
error or timeout), so callers can tell "retry later" from "this will never work".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from guardrail.logs.events import encode_message

PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"


class PubSubError(RuntimeError):
    """A Pub/Sub call failed; `status` is the HTTP status, None when the service was unreachable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def resource(kind: str, name: str, project: str) -> str:
    """`projects/{project}/{kind}/{name}`; a name that is already a full path is kept as it is."""
    return name if name.startswith("projects/") else f"projects/{project}/{kind}/{name}"


@dataclass(frozen=True, slots=True)
class Received:
    """One pulled message."""

    ack_id: str
    message_id: str
    data: str | None
    attributes: dict[str, str]
    delivery_attempt: int | None


class _GoogleToken:
    """Bearer token from Application Default Credentials, refreshed before it expires."""

    def __init__(self) -> None:
        import google.auth

        self._creds, _ = google.auth.default(scopes=[PUBSUB_SCOPE])
        self._lock = asyncio.Lock()

    async def headers(self) -> dict[str, str]:
        from google.auth.transport.requests import Request

        async with self._lock:
            if not self._creds.valid:
                await asyncio.to_thread(self._creds.refresh, Request())
        return {"Authorization": f"Bearer {self._creds.token}"}


class PubSubClient:
    """The few Pub/Sub calls the service needs: publish, pull, ack/nack, and idempotent setup."""

    def __init__(self, *, project: str, emulator_host: str | None = None, timeout_s: float = 5.0) -> None:
        self.project = project
        self.emulator = bool(emulator_host)
        base = f"http://{emulator_host}/v1/" if emulator_host else "https://pubsub.googleapis.com/v1/"
        self._http = httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0)))
        self._token: _GoogleToken | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                    timeout_s: float | None = None) -> dict[str, Any]:
        headers: dict[str, str] = {}
        if not self.emulator:
            if self._token is None:
                self._token = _GoogleToken()
            headers = await self._token.headers()
        kwargs: dict[str, Any] = {"json": body, "headers": headers}
        if timeout_s is not None:
            kwargs["timeout"] = timeout_s
        try:
            r = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PubSubError(f"Pub/Sub unreachable: {exc.__class__.__name__}") from exc
        if r.status_code >= 300:
            raise PubSubError(f"Pub/Sub {method} {path}: HTTP {r.status_code} {r.text[:200]}", r.status_code)
        return r.json() if r.content else {}

    def topic(self, name: str) -> str:
        return resource("topics", name, self.project)

    def subscription(self, name: str) -> str:
        return resource("subscriptions", name, self.project)

    async def publish(self, topic: str, messages: Sequence[dict[str, Any]]) -> list[str]:
        """Publish REST messages (`{"data": base64, "attributes": {...}}`); returns their message ids."""
        out = await self._call("POST", f"{self.topic(topic)}:publish", {"messages": list(messages)})
        return list(out.get("messageIds", []))

    async def pull(self, subscription: str, *, max_messages: int = 100) -> list[Received]:
        """Up to `max_messages` messages, answered at once (empty when none are waiting).

        `returnImmediately` rather than a long poll with a client-side timeout: a long poll the
        client gives up on may already hold messages, which then sit out their ack deadline.
        The caller sleeps a little between empty pulls.
        """
        out = await self._call("POST", f"{self.subscription(subscription)}:pull",
                               {"maxMessages": max_messages, "returnImmediately": True})
        got = []
        for m in out.get("receivedMessages", []):
            msg = m.get("message", {})
            got.append(Received(ack_id=m["ackId"], message_id=str(msg.get("messageId", "")), data=msg.get("data"),
                                attributes=dict(msg.get("attributes") or {}),
                                delivery_attempt=m.get("deliveryAttempt")))
        return got

    async def ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        if ack_ids:
            await self._call("POST", f"{self.subscription(subscription)}:acknowledge", {"ackIds": list(ack_ids)})

    async def nack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        """Hand messages back for redelivery now (this counts as a delivery attempt)."""
        if ack_ids:
            await self._call("POST", f"{self.subscription(subscription)}:modifyAckDeadline",
                             {"ackIds": list(ack_ids), "ackDeadlineSeconds": 0})

    async def ensure_topic(self, topic: str) -> None:
        """Create the topic unless it exists (local use and tests; Terraform owns production)."""
        try:
            await self._call("PUT", self.topic(topic), {})
        except PubSubError as exc:
            if exc.status != 409:
                raise

    async def ensure_subscription(self, subscription: str, topic: str, *, push_endpoint: str | None = None,
                                  dead_letter_topic: str | None = None, max_delivery_attempts: int = 5,
                                  ack_deadline_s: int = 30, min_backoff_s: float = 1.0,
                                  max_backoff_s: float = 10.0) -> None:
        """Create the subscription unless it exists, optionally push, with a dead-letter policy."""
        body: dict[str, Any] = {"topic": self.topic(topic), "ackDeadlineSeconds": ack_deadline_s,
                                "retryPolicy": {"minimumBackoff": f"{min_backoff_s}s",
                                                "maximumBackoff": f"{max_backoff_s}s"}}
        if push_endpoint:
            body["pushConfig"] = {"pushEndpoint": push_endpoint}
        if dead_letter_topic:
            body["deadLetterPolicy"] = {"deadLetterTopic": self.topic(dead_letter_topic),
                                        "maxDeliveryAttempts": max_delivery_attempts}
        try:
            await self._call("PUT", self.subscription(subscription), body)
        except PubSubError as exc:
            if exc.status != 409:
                raise


class PubSubSink:
    """Publishes batches of judgement-event rows to one topic: the `deliver` of a QueuedPublisher."""

    def __init__(self, client: PubSubClient, topic: str) -> None:
        self._client = client
        self._topic = topic

    async def __call__(self, rows: list[dict[str, Any]]) -> None:
        # Pub/Sub takes at most 1,000 messages and 10 MB per publish call.
        for i in range(0, len(rows), 500):
            await self._client.publish(self._topic, [encode_message(r) for r in rows[i:i + 500]])
