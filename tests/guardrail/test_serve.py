"""The operator contract: `guardrail serve` as a process, spoken to over HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from inference.launcher import LocalEngine, free_port
from tests.conftest import ADMIN, API_KEY
from tests.http_wait import wait_http

pytestmark = pytest.mark.model


@contextmanager
def serve(tmp: Path, extra_env: dict[str, str], ready_s: float = 600
          ) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    port = free_port()
    log = tmp / "serve.log"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    env = {**inherited, "GUARDRAIL_DATA_DIR": str(tmp / "data"), **extra_env}
    with log.open("w") as out:
        p = subprocess.Popen([sys.executable, "-m", "guardrail.cli", "serve", "--port", str(port)], env=env,
                             stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", timeout_s=ready_s, proc=p, log_path=log, interval_s=1.0)
        yield base, p, log
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(60)


def test_serve_starts_its_own_engine_and_stops_it(tmp_path: Path) -> None:
    env = {"GUARDRAIL_BOOTSTRAP_API_KEY": API_KEY, "GUARDRAIL_ADMIN_TOKEN": ADMIN}  # no INFERENCE_URL
    with serve(tmp_path, env) as (base, proc, log):
        engines = [c for c in psutil.Process(proc.pid).children(recursive=True)
                   if "vllm.entrypoints.openai.api_server" in " ".join(c.cmdline())]
        assert engines, "serve did not start a vLLM engine"
        r = httpx.post(f"{base}/v1/judge", json={"text": "こんにちは"},
                       headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)
        assert r.status_code == 200 and len(r.json()["categories"]) == 8
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert "guardrail_request_seconds" in httpx.get(f"{base}/metrics").text
        assert r.headers["x-request-id"]
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(90) == 0
        out = log.read_text()
    assert "engine: healthy after" in out and "engine: warmed up" in out
    assert "こんにちは" not in out  # judged text never reaches the logs
    time.sleep(1)
    assert not any(e.is_running() and e.status() != psutil.STATUS_ZOMBIE for e in engines), "engine outlived serve"


def test_first_start_prints_working_keys_once(engine: LocalEngine, tmp_path: Path) -> None:
    env = {"GUARDRAIL_INFERENCE_URL": engine.url, "GUARDRAIL_ADMIN_TOKEN": ADMIN}
    with serve(tmp_path, env) as (base, _, log):
        out = log.read_text()
        key = re.search(r"Judge API key \(shown once\):\s+(gr-\S+)", out)
        admin_key = re.search(r"Tenant admin key \(shown once\):\s+(gra-\S+)", out)
        assert key and admin_key, out
        r = httpx.post(f"{base}/v1/judge", json={"text": "テスト", "categories": ["violence"]},
                       headers={"Authorization": f"Bearer {key.group(1)}"}, timeout=120)
        assert r.status_code == 200
        r = httpx.get(f"{base}/admin/v1/tenants", headers={"Authorization": f"Bearer {admin_key.group(1)}"})
        assert r.status_code == 200 and len(r.json()["items"]) == 1
    # The key is stored hashed only: the database file does not contain it.
    assert key.group(1).encode() not in (tmp_path / "data" / "guardrail.db").read_bytes()
    with serve(tmp_path, env) as (_, _, log):
        assert "shown once" not in log.read_text().split("serve: http")[-1]


def test_serve_with_two_workers_shares_one_state(engine: LocalEngine, tmp_path: Path) -> None:
    """GUARDRAIL_WORKERS=2: keys printed once, both workers judge, every judgement logged once."""
    env = {"GUARDRAIL_INFERENCE_URL": engine.url, "GUARDRAIL_ADMIN_TOKEN": ADMIN, "GUARDRAIL_WORKERS": "2"}
    with serve(tmp_path, env) as (base, proc, log):
        out = log.read_text()
        assert out.count("Judge API key (shown once)") == 1, out
        key = re.search(r"Judge API key \(shown once\):\s+(gr-\S+)", out)
        assert key
        workers = [c for c in psutil.Process(proc.pid).children(recursive=True) if "python" in c.name().lower()]
        assert len(workers) >= 2, workers

        async def burst() -> list[str]:
            async with httpx.AsyncClient(base_url=base, timeout=120,
                                         headers={"Authorization": f"Bearer {key.group(1)}"}) as c:
                body = [{"text": f"並列{i % 2}", "categories": ["violence"]} for i in range(24)]
                rs = await asyncio.gather(*(c.post("/v1/judge", json=b) for b in body))
            assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
            return [r.json()["id"] for r in rs]

        ids = asyncio.run(burst())
        h = {"Authorization": f"Bearer {ADMIN}"}
        tenant = httpx.get(f"{base}/admin/v1/tenants", headers=h).json()["items"][0]["id"]
        deadline = time.monotonic() + 30
        logged: list[str] = []
        while time.monotonic() < deadline and len(logged) < len(ids):
            page = httpx.get(f"{base}/admin/v1/tenants/{tenant}/judgements", params={"limit": 100}, headers=h).json()
            logged = [j["id"] for j in page["items"]]
            time.sleep(0.3)
        assert sorted(logged) == sorted(ids)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(90) == 0, log.read_text()[-2000:]


def test_spools_of_departed_worker_processes_are_adopted(tmp_path: Path) -> None:
    from guardrail.logs.publisher import Spool

    base = tmp_path / "spool" / "events.jsonl"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    base.parent.mkdir(parents=True)
    base.with_name(f"events.{dead_pid}.jsonl").write_text('{"id": "a"}\n')
    base.with_name(f"events.{dead_pid}.taking.jsonl").write_text('{"id": "b"}\n')  # a crash mid-replay
    base.write_text('{"id": "c"}\n')  # left by a single-process run
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        base.with_name(f"events.{live.pid}.jsonl").write_text('{"id": "d"}\n')  # a running worker's own
        mine = Spool(base, per_process=True)
        mine.append([{"id": "e"}])
        assert sorted(e["id"] for e in mine.take()) == ["a", "b", "c", "e"]
        assert not mine.pending()
        assert base.with_name(f"events.{live.pid}.jsonl").exists()
    finally:
        live.kill()
        live.wait()
    assert Spool(base, per_process=True).take() == [{"id": "d"}]
