"""Throughput and latency of cache-hit judgements: the service with Redis, loaded by wrk.

What it measures: `POST /v1/judge` requests whose every category verdict is already cached
(the common case for templates, retries and popular prompts), so no model call is made. The
service runs as `guardrail serve` with GUARDRAIL_REDIS_URL and `--workers` worker processes
(default 2, one per core); the load comes from a separate process, `wrk` (Debian package `wrk`),
on the same 2-core machine. Each judgement log mode (`--logging on off`: the embedded default's
log writer into SQLite, or GUARDRAIL_JUDGEMENT_LOG=off) gets its own service.

    .venv/bin/python bench/cache_hits.py [--engine-url URL] [--seconds 20] [--connections 8 32]

It primes N texts through the real model once, checks they come back `cached: true`, then runs
wrk cycling over them and prints requests/s, p50/p99/max latency and the CPU time per request of
the service (all its processes and threads), Redis and wrk; JSON goes to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.engine_config import EngineConfig  # noqa: E402
from inference.launcher import LocalEngine, free_port  # noqa: E402
from inference.model_prep import prepare_base_model  # noqa: E402

KEY = "gr-bench-" + uuid.uuid4().hex
ADMIN = "admin-bench-" + uuid.uuid4().hex
TEXTS = [f"ベンチマーク用のよくある質問その{i}：営業時間と駐車場について教えてください。" for i in range(20)]

LUA = """
local texts = {%s}
local i = 0
request = function()
  i = i + 1
  local body = '{"text": "' .. texts[(i %% #texts) + 1] .. '"}'
  return wrk.format("POST", "/v1/judge", {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer %s"}, body)
end
"""


def start_serve(engine_url: str, model: str, data: Path,
                extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    env.update({"GUARDRAIL_INFERENCE_URL": engine_url, "GUARDRAIL_MODEL_NAME": model,
                "GUARDRAIL_DATA_DIR": str(data), "GUARDRAIL_BOOTSTRAP_API_KEY": KEY,
                "GUARDRAIL_ADMIN_TOKEN": ADMIN, "GUARDRAIL_REDIS_URL": "redis://127.0.0.1:6379/0",
                "GUARDRAIL_REDIS_PREFIX": f"bench:{uuid.uuid4().hex[:8]}:", "GUARDRAIL_LOG_LEVEL": "WARNING"})
    env.update(extra_env or {})
    log = (data / "serve.log").open("wb")
    p = subprocess.Popen([str(ROOT / ".venv/bin/guardrail"), "serve", "--port", str(port)], env=env,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(f"{base}/readyz", timeout=2).json().get("status") == "ready":
                return p, base
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise SystemExit("serve did not become ready")


def prime(base: str) -> None:
    h = {"Authorization": f"Bearer {KEY}"}
    for t in TEXTS:
        httpx.post(f"{base}/v1/judge", json={"text": t}, headers=h, timeout=120).raise_for_status()
    bad = list(TEXTS)
    for _ in range(3):  # a cache write can be skipped when Redis is slow (50 ms budget) on a loaded machine
        bad = [t for t in bad if not httpx.post(f"{base}/v1/judge", json={"text": t}, headers=h,
                                                timeout=120).json()["cached"]]
    if bad:
        raise SystemExit(f"{len(bad)} primed texts were not served from the cache")


def parse_wrk(out: str) -> dict[str, Any]:
    def ms(v: str) -> float:
        num, unit = re.match(r"([0-9.]+)(us|ms|s)", v).groups()  # type: ignore[union-attr]
        return float(num) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    mx = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"requests_per_s": float(rps.group(1)) if rps else 0.0, "p50_ms": ms(lat["50"]), "p99_ms": ms(lat["99"]),
            "max_ms": ms(mx.group(1)) if mx else 0.0, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else "none"}


def engine_for(engine_url: str | None) -> tuple[Any, LocalEngine | None, str]:
    """(prepared model, engine we started or None, URL): the given engine, or a local one started here."""
    m = prepare_base_model()
    if engine_url:
        return m, None, engine_url
    eng = LocalEngine(EngineConfig(model=str(m.path), served_model_name=m.name),
                      log_path=Path(tempfile.mkdtemp()) / "engine.log")
    return m, eng, eng.start()


def _cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _redis_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def run_wrk(base: str, data: Path, conns: int, seconds: int, serve_pid: int) -> dict[str, Any]:
    """wrk cycling over the primed texts: requests/s, latency percentiles, CPU ms per request."""
    script = data / "judge.lua"
    script.write_text(LUA % (", ".join(json.dumps(t, ensure_ascii=False) for t in TEXTS), KEY))
    print(f"wrk: {conns} connections, {seconds} s …", flush=True)
    groups = {"serve": _tree(serve_pid), "redis": _redis_pids()}
    before = {g: sum(map(_cpu_s, pids)) for g, pids in groups.items()}
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), base],
                         capture_output=True, text=True, check=True).stdout
    after = {g: sum(map(_cpu_s, pids)) for g, pids in groups.items()}
    kids_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped meanwhile
    after["wrk"] = kids_after.ru_utime + kids_after.ru_stime
    before["wrk"] = kids.ru_utime + kids.ru_stime
    row = parse_wrk(out)
    n = int(m.group(1)) if (m := re.search(r"(\d+) requests in", out)) else 1
    row.update({f"{g}_cpu_ms_per_req": round(1000 * (after[g] - before[g]) / n, 3) for g in after})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine-url")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--workers", type=int, default=2, help="GUARDRAIL_WORKERS of the served API (one per core)")
    ap.add_argument("--logging", nargs="+", choices=["on", "off"], default=["on", "off"],
                    help="judgement log modes to measure, one service each")
    ap.add_argument("--out", default=str(ROOT / "bench/results/cache_hits.json"))
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    m, eng, url = engine_for(args.engine_url)
    rows = []
    try:
        for logging in args.logging:
            data = Path(tempfile.mkdtemp(prefix="bench-cache-"))
            extra = {"GUARDRAIL_WORKERS": str(args.workers), "GUARDRAIL_JUDGEMENT_LOG": logging}
            serve, base = start_serve(url, m.name, data, extra)
            try:
                print(f"logging {logging}: priming {len(TEXTS)} texts through the model …", flush=True)
                prime(base)
                for conns in args.connections:
                    rows.append({"logging": logging, "workers": args.workers, "connections": conns,
                                 **run_wrk(base, data, conns, args.seconds, serve.pid)})
            finally:
                os.killpg(serve.pid, signal.SIGTERM)
                serve.wait(30)
    finally:
        if eng:
            eng.stop()
    print(f"\ncache-hit judgements, 8 categories, `guardrail serve` with {args.workers} worker(s) + Redis, "
          f"wrk on the same {os.cpu_count()} cores, {args.seconds} s per row\n")
    print(f"{'logging':>7}  {'conns':>5}  {'req/s':>7}  {'p50 ms':>7}  {'p99 ms':>7}  {'max ms':>7}  {'non-2xx':>7}"
          f"  {'CPU ms/req: serve':>17}  {'redis':>5}  {'wrk':>5}")
    for r in rows:
        print(f"{r['logging']:>7}  {r['connections']:>5}  {r['requests_per_s']:>7.0f}  {r['p50_ms']:>7.2f}  "
              f"{r['p99_ms']:>7.2f}  {r['max_ms']:>7.1f}  {r['non_2xx']:>7}  {r['serve_cpu_ms_per_req']:>17.3f}  "
              f"{r['redis_cpu_ms_per_req']:>5.3f}  {r['wrk_cpu_ms_per_req']:>5.3f}")
    print("target: ≥ 2,000 judgements/s with p99 ≤ 20 ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "seconds": args.seconds}, indent=2))


if __name__ == "__main__":
    main()
