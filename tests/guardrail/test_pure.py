"""Pure pieces of the service: verdict cache, single-flight, key handling, privacy forms."""

from __future__ import annotations

import asyncio
from pathlib import Path

from guardrail.adapters.memory import MemoryVerdictCache
from guardrail.judge.singleflight import SingleFlight
from guardrail.logs.privacy import mask, stored_text
from guardrail.security import bearer_token, hash_key, new_key, visible_prefix


async def test_memory_cache_hits_expires_and_evicts_least_recent() -> None:
    c = MemoryVerdictCache(max_entries=2)
    await c.set_many({"a": 0.1, "b": 0.2}, ttl_s=60)
    assert await c.get_many(["a", "b", "x"]) == {"a": 0.1, "b": 0.2}
    await c.get_many(["a"])  # a is now most recent
    await c.set_many({"c": 0.3}, ttl_s=60)
    assert await c.get_many(["a", "b", "c"]) == {"a": 0.1, "c": 0.3}
    await c.set_many({"d": 0.4}, ttl_s=-1)  # ttl <= 0 stores nothing
    assert await c.get_many(["d"]) == {}


async def test_single_flight_runs_identical_work_once() -> None:
    sf: SingleFlight[int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*[sf.do("k", work) for _ in range(10)])
    assert calls == 1
    assert [r for r, _ in results] == [42] * 10
    assert sum(shared for _, shared in results) == 9
    assert len(sf) == 0


def test_keys_are_random_prefixed_and_hashed() -> None:
    a, b = new_key("judge"), new_key("admin")
    assert a.startswith("gr-") and b.startswith("gra-") and a != new_key("judge")
    assert hash_key(a) != a and len(hash_key(a)) == 64
    assert visible_prefix(a) == a[:10]
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None and bearer_token("Bearer ") is None


def test_log_text_forms() -> None:
    t = "田中の電話は090-1234-5678、mail: a.b@example.co.jp"
    assert stored_text(t, "full") == t
    assert stored_text(t, "hash") is None
    m = mask(t)
    assert "090" not in m and "example" not in m and m.startswith("田中の電話は***-")


async def test_shutdown_during_the_batch_linger_spools_the_event(tmp_path: Path) -> None:
    """A flush that cancels the writer while it lingers for a fuller batch must not drop that batch."""
    from guardrail.logs.publisher import QueuedPublisher, Spool
    from guardrail.ports import JudgementEvent

    delivered: list[dict[str, object]] = []

    async def deliver(rows: list[dict[str, object]]) -> None:
        delivered.extend(rows)

    spool = Spool(tmp_path / "events.jsonl")
    pub = QueuedPublisher(deliver, spool, sink="test", linger_s=5.0)
    pub.start()
    pub.publish(JudgementEvent(id="jdg_linger", tenant_id="t", api_key_id=None, direction="input", flagged=False,
                               flagged_categories=[], scores={}, model="m", latency_ms=1.0, cached=True, text=None,
                               prompt=None, text_sha256="ab" * 32, text_mode="hash", reason=None,
                               created_at="2026-11-22T00:00:00+00:00"))
    await asyncio.sleep(0.05)  # the writer has taken the event and is lingering
    await pub.flush(timeout_s=0.1)
    assert [r["id"] for r in delivered] + [r["id"] for r in spool.take()] == ["jdg_linger"]


def test_the_local_model_revision_comes_from_the_folders_manifest(tmp_path: Path) -> None:
    import json

    from guardrail.cli import local_model, model_revision
    from guardrail.config import Settings
    from inference.model_prep import MANIFEST

    folder = tmp_path / "judge"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    settings = Settings(data_dir=tmp_path, model_dir=folder)
    assert local_model(settings) == (folder, "judge", None)  # no manifest: no revision, the folder's name
    (folder / MANIFEST).write_text(json.dumps({"name": "jp-judge", "weights_sha256": "ab12" * 16}))
    assert local_model(settings) == (folder, "jp-judge", "sha256:ab12ab12ab12ab12")
    assert model_revision({"weights_sha256": ""}) is None and model_revision({"weights_sha256": 5}) is None


def test_the_served_revision_names_the_engine_dtype(tmp_path: Path) -> None:
    """bf16 and fp32 serving of the same weights give slightly different scores, so their verdicts must not
    share cache entries: the revision a local engine's judge uses carries the dtype the engine runs in."""
    from guardrail.cli import engine_config, served_revision
    from guardrail.config import Settings

    revisions = {dtype: served_revision("sha256:ab12ab12ab12ab12",
                                        engine_config(Settings(data_dir=tmp_path, engine_dtype=dtype), tmp_path, "j"))
                 for dtype in ("float32", "bfloat16")}
    assert revisions == {"float32": "sha256:ab12ab12ab12ab12+float32",
                         "bfloat16": "sha256:ab12ab12ab12ab12+bfloat16"}
    auto = engine_config(Settings(data_dir=tmp_path), tmp_path, "j")
    assert served_revision("sha256:ab12", auto) in {"sha256:ab12+float32", "sha256:ab12+bfloat16"}
    assert served_revision(None, auto) is None  # weights without a manifest: no revision to qualify
