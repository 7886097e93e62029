"""`training eval`: score a JSONL split through the real serving path (a vLLM server) and report.

Each record is one request, as serving sends a judgement: all its category prompts (the eight
defaults + its custom category) in one batched `/v1/completions` call with `max_tokens=1`,
`logprobs=20`, scored by the contract's `score_from_logprobs`. An answer with neither Yes nor No
in the top 20 is scored 1.0 (fail closed, as the service does) and counted. The server is the
one at `engine_url`, or a `LocalEngine` started on `model_dir` (or on the prepared `variant`).

When a split grows (a new data batch adds records to dev and test), `reuse_scores` points at the same
model's report on the older split: its scores are reused for the records it holds, after a sample of them
is scored again and must agree within a tolerance set by the two runs' serving dtypes (`reuse_tolerance`; else
the run stops: another model or machine; a known dtype mismatch stops it before a server starts), and only the
new records are sent to the server. Every report keeps a digest of each record's judge
prompts (`prompt_sha256`), so a record whose prompts changed since (an edited text, a new contract such as a
change to `normalize_text`) is scored again instead of reused; a report older than the digests matches by id.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from inference.contract import InvalidModelOutput, score_from_logprobs
from inference.engine_config import EngineDtype
from training.compare import load, load_scores
from training.dataset import DATA_DIR, read_jsonl
from training.metrics import ScoredPair, pick_threshold
from training.pairs import expand
from training.report import build_report, write_report

REUSE_TOLERANCE = 1e-3
"""Largest |score difference| allowed between a reused score and the same pair scored again when both runs serve
fp32 (or a run does not know its dtype): the same weights in fp32 on the same kind of CPU reproduce scores to
~1e-6 (every evaluation in docs/training.md serves fp32); two different adapters, or bf16 against fp32 serving,
differ by 0.01-0.06 on many pairs of a few texts."""
BF16_REUSE_TOLERANCE = 5e-3
"""The same when either run serves bf16, which moves a score by up to ~2e-3 with the batch it is computed in
(0.0018 seen in session 18's CI)."""
KNOWN_DTYPES = ("float32", "bfloat16", "float16")


def reuse_tolerance(given: float, source_dtype: object, served_dtype: object) -> float:
    """The tolerance for checking reused scores: `given` when set (> 0), else by the two runs' serving dtypes.
    Exits when both dtypes are known and differ: such scores never reproduce, whatever the tolerance."""
    if source_dtype in KNOWN_DTYPES and served_dtype in KNOWN_DTYPES and source_dtype != served_dtype:
        raise SystemExit(f"eval: the reused scores were served in {source_dtype} and this run serves {served_dtype}; "
                         f"serve {source_dtype} (--engine-dtype) or score the whole split (no --reuse-scores)")
    if given > 0:
        return given
    return BF16_REUSE_TOLERANCE if "bfloat16" in (source_dtype, served_dtype) else REUSE_TOLERANCE


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """What to score, against which server, and where the report goes."""

    data: Path = field(default=DATA_DIR / "splits" / "test.jsonl", metadata={"help": "JSONL records to score"})
    engine_url: str = field(default="", metadata={"help": "a running vLLM server; empty = start one locally"})
    model_dir: str = field(default="", metadata={"help": "folder for the local server; empty = prepared variant"})
    variant: str = field(default="tuned", metadata={"help": "tuned or base (when model_dir is empty)"})
    model_name: str = field(default="", metadata={"help": "served model name; empty = asked from the server"})
    name: str = field(default="", metadata={"help": "report title / row name; empty = the model name"})
    out_dir: Path = field(default=Path("training/reports/eval"), metadata={"help": "report folder"})
    threshold: float = field(default=0.5, metadata={"help": "decision threshold the report states"})
    threshold_from: Path | None = field(default=None, metadata={
        "help": "a dev report.json: use its best-F1 threshold with benign FPR <= max_benign_fpr instead"})
    max_benign_fpr: float = field(default=0.10, metadata={"help": "limit used with threshold_from"})
    concurrency: int = field(default=4, metadata={"help": "requests in flight"})
    every: int = field(default=1, metadata={"help": "score every N-th record (a deterministic subset)"})
    limit: int = field(default=0, metadata={"help": "score only the first N records after `every` (0 = all)"})
    engine_dtype: EngineDtype = field(default="auto", metadata={
        "help": "dtype of the local server: auto (bf16 where the CPU multiplies bf16, else fp32), bfloat16, float32; "
                "with engine_url, what that server serves (recorded; auto = not known)"})
    reuse_scores: Path | None = field(default=None, metadata={
        "help": "a report folder of the same model on an older version of the split: reuse its scores for the "
                "records it holds (matched by id; records must not have been edited) and score only the rest"})
    reuse_check: int = field(default=8, metadata={
        "help": "reused records scored again first; any pair off by more than --reuse-tolerance stops the run"})
    reuse_tolerance: float = field(default=0.0, metadata={
        "help": "largest |difference| allowed between a reused score and the pair scored again; 0 = by the serving "
                f"dtypes: {REUSE_TOLERANCE} for fp32, {BF16_REUSE_TOLERANCE} when either run served bf16"})


def prompt_digest(rec: dict[str, Any]) -> str:
    """Short digest of every judge prompt of one record, in pair order (what its scores depend on besides the model)."""
    h = hashlib.sha256()
    for p in expand(rec):
        h.update(p.judge_prompt().encode("utf-8") + b"\x1e")
    return h.hexdigest()[:16]


def reusable(folder: Path, records: list[dict[str, Any]]) -> dict[str, list[ScoredPair]]:
    """The pairs of `records` that `folder`'s scores.jsonl holds, by record id, labelled from the records as they
    are now. A record is reusable only when every one of its pairs has a score there and, when the folder's
    report.json has prompt digests, its judge prompts are the same as they are now."""
    old = {(r.record_id, r.category): r.score for r in load_scores(folder)}
    report = folder / "report.json"
    digests = load(report).get("prompt_sha256") if report.is_file() else None
    if digests is None:
        print(f"eval: {folder} predates prompt digests; its records are matched by id only", flush=True)
    out: dict[str, list[ScoredPair]] = {}
    for rec in records:
        pairs = expand(rec)
        if digests is not None and digests.get(rec["id"]) != prompt_digest(rec):
            continue
        if all((p.record_id, p.category.id) in old for p in pairs):
            out[rec["id"]] = [ScoredPair(p.record_id, p.category.id, p.label, old[(p.record_id, p.category.id)])
                              for p in pairs]
    return out


def check_reused(fresh: list[ScoredPair], reused: dict[str, list[ScoredPair]], folder: Path,
                 tolerance: float) -> float:
    """Largest difference between freshly scored pairs and their reused scores; exits when it is too large."""
    old = {(r.record_id, r.category): r.score for rows in reused.values() for r in rows}
    worst = max((abs(r.score - old[(r.record_id, r.category)]) for r in fresh), default=0.0)
    if worst > tolerance:
        raise SystemExit(f"eval: scores in {folder} are not this model's: re-scored pairs differ by up to "
                         f"{worst:.4f} (> {tolerance}); another model, engine dtype or machine? "
                         "Score the whole split instead (no --reuse-scores).")
    return worst


def score_records(url: str, model: str, records: list[dict[str, Any]], *, concurrency: int = 4
                  ) -> tuple[list[ScoredPair], int]:
    """Every pair of every record through `url`; returns (scored pairs in record order, invalid answers)."""
    invalid = 0

    def one(client: httpx.Client, rec: dict[str, Any]) -> list[ScoredPair]:
        nonlocal invalid
        pairs = expand(rec)
        body = {"model": model, "prompt": [p.judge_prompt() for p in pairs], "max_tokens": 1, "logprobs": 20,
                "temperature": 0.0}
        r = client.post("/v1/completions", json=body)
        r.raise_for_status()
        choices = sorted(r.json()["choices"], key=lambda c: c["index"])
        out = []
        for p, ch in zip(pairs, choices, strict=True):
            top = ((ch.get("logprobs") or {}).get("top_logprobs") or [{}])[0] or {}
            try:
                s = score_from_logprobs(top)
            except InvalidModelOutput:
                invalid += 1
                s = 1.0
            out.append(ScoredPair(p.record_id, p.category.id, p.label, s))
        return out

    with httpx.Client(base_url=url.rstrip("/"), timeout=300.0) as client, \
            ThreadPoolExecutor(max(1, concurrency)) as pool, \
            tqdm(total=len(records), desc="eval", unit="text", dynamic_ncols=True) as bar:
        futures = [pool.submit(one, client, r) for r in records]
        rows: list[ScoredPair] = []
        for f in futures:
            rows += f.result()
            bar.update(1)
    return rows, invalid


def served_name(url: str) -> str:
    r = httpx.get(f"{url.rstrip('/')}/v1/models", timeout=10.0)
    r.raise_for_status()
    return str(r.json()["data"][0]["id"])


def main(cfg: EvalConfig) -> dict[str, Any]:
    """Score `cfg.data` through vLLM and write report.json/.md, scores.jsonl and the PNGs."""
    records = read_jsonl(cfg.data)[::max(1, cfg.every)]
    if cfg.limit:
        records = records[:cfg.limit]
    source = Path(cfg.reuse_scores) if cfg.reuse_scores else None
    if source and cfg.reuse_check < 1:
        raise SystemExit("eval: --reuse-check must be at least 1 (reused scores are always checked)")
    reused = reusable(source, records) if source else {}
    source_meta = load(source / "report.json") if source and (source / "report.json").is_file() else {}
    engine = None
    url = cfg.engine_url
    served_dtype: str = cfg.engine_dtype if cfg.engine_dtype != "auto" else "as the server at engine_url runs"
    if not url:
        from inference.engine_config import EngineConfig
        from inference.launcher import LocalEngine
        from inference.model_prep import prepare_model, read_manifest

        if cfg.model_dir:
            folder = Path(cfg.model_dir)
            name = str((read_manifest(folder) or {}).get("name") or folder.name)
        else:
            prepared = prepare_model(cfg.variant)
            folder, name = prepared.path, prepared.name
        engine_cfg = EngineConfig(model=str(folder), served_model_name=name, dtype=cfg.engine_dtype)
        served_dtype = engine_cfg.resolved_dtype("cpu")
        engine = LocalEngine(engine_cfg, log_path=Path(cfg.out_dir) / "engine.log")
    tolerance = 0.0
    if source and reused:  # before a server starts: a dtype mismatch is refused at once
        tolerance = reuse_tolerance(cfg.reuse_tolerance, source_meta.get("engine_dtype"), served_dtype)
    if engine is not None:
        url = engine.start()
    reuse_note: dict[str, Any] = {}
    try:
        model = cfg.model_name or served_name(url)
        t0 = time.monotonic()
        if source and reused:
            ids = list(reused)
            picked = set(ids[::max(1, len(ids) // cfg.reuse_check)][:cfg.reuse_check])
            sample = [r for r in records if r["id"] in picked]
            fresh, _ = score_records(url, model, sample, concurrency=cfg.concurrency)
            worst = check_reused(fresh, reused, source, tolerance)
            # invalid_outputs below counts the newly scored records; the source report's count is kept here
            reuse_note = {"reused_scores": {"from": str(source), "records": len(reused),
                                            "checked_records": len(sample), "max_abs_diff": worst,
                                            "tolerance": tolerance,
                                            "source_invalid_outputs": source_meta.get("invalid_outputs")}}
            print(f"eval: reusing {len(reused)} records' scores from {source} "
                  f"({len(sample)} re-scored, max difference {worst:.2g}); scoring {len(records) - len(reused)}",
                  flush=True)
        new, invalid = score_records(url, model, [r for r in records if r["id"] not in reused],
                                     concurrency=cfg.concurrency)
        secs = round(time.monotonic() - t0, 1)
    finally:
        if engine is not None:
            engine.stop()
    by_id: dict[str, list[ScoredPair]] = {**reused}
    for row in new:
        by_id.setdefault(row.record_id, []).append(row)
    rows = [row for rec in records for row in by_id[rec["id"]]]
    threshold, note = cfg.threshold, {}
    if cfg.threshold_from:
        dev = json.loads(Path(cfg.threshold_from).read_text())
        threshold = pick_threshold(dev["sweep"], max_benign_fpr=cfg.max_benign_fpr)
        note = {"note": f"threshold {threshold} chosen on {dev.get('data', cfg.threshold_from)} "
                        f"(best F1 with benign FPR <= {cfg.max_benign_fpr:.0%})"}
    rep = build_report(rows, name=cfg.name or model, threshold=threshold,
                       extra={"engine": "vLLM /v1/completions (serving path)", "engine_dtype": served_dtype,
                              "model": model,
                              "data": str(cfg.data), "invalid_outputs": invalid, "seconds": secs,
                              **note, **reuse_note,
                              "prompt_sha256": {rec["id"]: prompt_digest(rec) for rec in records}},
                       tags={rec["id"]: rec.get("tags") or [] for rec in records})
    write_report(rows, rep, Path(cfg.out_dir))
    print(json.dumps({"name": rep["name"], "f1": rep["overall"]["f1"], "macro_f1": rep["macro_f1"],
                      "benign_fpr": rep["benign_fpr"], "best_f1_threshold": rep["best_f1_threshold"],
                      "out": str(cfg.out_dir)}), flush=True)
    return rep
