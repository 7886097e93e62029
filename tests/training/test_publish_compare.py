"""Publishing an exported folder to the registry (a real GCS API emulator and a local path); comparison table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from training.compare import CompareConfig
from training.compare import main as compare_main
from training.metrics import ScoredPair
from training.publish import MARKER, PublishConfig, publish
from training.report import build_report, write_report


@pytest.fixture
def fake_export(tmp_path: Path) -> Path:
    d = tmp_path / "export"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"\0" * 1000)
    (d / "sub" / "x.txt").write_text("x")
    (d / "guardrail-model.json").write_text(json.dumps({"name": "jp-judge-test"}))
    return d


def test_publish_to_a_local_registry_writes_files_then_the_marker(fake_export: Path, tmp_path: Path) -> None:
    dest = publish(PublishConfig(model_dir=fake_export, registry=str(tmp_path / "reg"), version="v1"))
    assert dest == f"{tmp_path / 'reg'}/jp-judge-test/v1"
    mark = json.loads((Path(dest) / MARKER).read_text())
    assert {f["path"] for f in mark["files"]} == {"config.json", "model.safetensors", "sub/x.txt",
                                                  "guardrail-model.json"}
    assert (Path(dest) / "sub" / "x.txt").read_text() == "x"
    with pytest.raises(ValueError, match="--version"):
        publish(PublishConfig(model_dir=fake_export, registry=str(tmp_path / "reg")))
    with pytest.raises(ValueError, match="not an exported model"):
        publish(PublishConfig(model_dir=tmp_path, registry=str(tmp_path / "reg"), version="v1"))


@pytest.fixture
def gcs_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    from inference.launcher import free_port

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="models")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    yield "models"
    server.stop()


# google-api-core nags about the optional grpcio-status package at import; the upload path is plain HTTP.
@pytest.mark.filterwarnings("ignore:Please install grpcio-status:ImportWarning")
def test_publish_to_gcs_uploads_through_the_storage_api(fake_export: Path, gcs_emulator: str) -> None:
    from google.cloud import storage  # type: ignore[attr-defined, unused-ignore]

    dest = publish(PublishConfig(model_dir=fake_export, registry=f"gs://{gcs_emulator}/registry", version="2026-11-22"))
    assert dest == f"gs://{gcs_emulator}/registry/jp-judge-test/2026-11-22"
    bucket = storage.Client().bucket(gcs_emulator)
    names = sorted(b.name for b in bucket.list_blobs(prefix="registry/"))
    assert names == sorted(f"registry/jp-judge-test/2026-11-22/{n}" for n in
                           ("config.json", "model.safetensors", "sub/x.txt", "guardrail-model.json", MARKER))
    blob = bucket.blob("registry/jp-judge-test/2026-11-22/model.safetensors")
    assert blob.download_as_bytes() == b"\0" * 1000


def test_compare_tabulates_reports_and_marks_fp8_rows(tmp_path: Path) -> None:
    rows = [ScoredPair("r1", "violence", True, 0.9), ScoredPair("r2", "violence", False, 0.2),
            ScoredPair("r2", "privacy", False, 0.7)]
    paths = []
    for name in ("bf16", "ptq_int8_dynamic"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(build_report(rows, name=name, threshold=0.5)))
        paths.append(str(tmp_path / name))
    md = compare_main(CompareConfig(reports=",".join(paths), out=tmp_path / "cmp.md"))
    assert "| `bf16` | 0.667 | 1.000 | 100.0% |" in md  # r2 is benign and flagged by privacy
    assert "`fp8_training` | — (needs an NVIDIA GPU" in md
    assert json.loads((tmp_path / "cmp.json").read_text())[1]["name"] == "ptq_int8_dynamic"


def test_a_report_of_no_scored_pairs_has_no_interval_and_still_renders(tmp_path: Path) -> None:
    rep = build_report([], name="empty", threshold=0.5)  # e.g. every model answer was invalid
    assert rep["ci95"] is None and rep["overall"]["f1"] == 0.0
    write_report([], rep, tmp_path)
    assert "95% interval" not in (tmp_path / "report.md").read_text()
    assert "## Calibration" not in (tmp_path / "report.md").read_text()


def _report(folder: Path, name: str, rows: list[ScoredPair], threshold: float) -> str:
    write_report(rows, build_report(rows, name=name, threshold=threshold), folder)
    return str(folder)


def test_compare_counts_wrong_pairs_by_kind_also_for_reports_written_before_them(tmp_path: Path) -> None:
    rows = [ScoredPair("h", "violence", True, 0.2), ScoredPair("h", "privacy", False, 0.8),
            ScoredPair("s", "violence", False, 0.6), ScoredPair("g", "privacy", True, 0.9)]
    new = _report(tmp_path / "new", "new", rows, 0.5)
    old = _report(tmp_path / "old", "old", rows, 0.5)
    rep = json.loads((tmp_path / "old" / "report.json").read_text())
    del rep["pair_errors"]  # as in a report.json from before session 17
    (tmp_path / "old" / "report.json").write_text(json.dumps(rep))
    md = compare_main(CompareConfig(reports=f"{new},{old}", out=tmp_path / "cmp.md", add_fp8_placeholders=False))
    assert "missed / safe-text / wrong-category" in md
    assert sum(" | 1 / 1 / 1 | " in line for line in md.splitlines()) == 2, md
    assert "1 missed, 1 flags on safe texts, 1 flags of a harmful text" in (tmp_path / "new" / "report.md").read_text()
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert saved[1]["pair_errors"] == {"missed": 1, "safe_text_flags": 1, "wrong_category_flags": 1}


def test_compare_pairs_reports_with_a_baseline_and_rescores_at_one_threshold(tmp_path: Path) -> None:
    gold = [(f"t{i}", c, (i + k) % 4 == 0) for i in range(80) for k, c in enumerate(("violence", "privacy"))]
    weak = [ScoredPair(r, c, y, 0.6 if (y or r.endswith("1")) else 0.4) for r, c, y in gold]  # t1, t11, ... flagged
    strong = [ScoredPair(r, c, y, 0.8 if y else 0.2) for r, c, y in gold]
    a = _report(tmp_path / "weak", "weak", weak, 0.5)
    b = _report(tmp_path / "strong", "strong", strong, 0.7)
    other = _report(tmp_path / "other", "other", [ScoredPair(f"x{i}", "violence", True, 0.9) for i in range(5)], 0.5)
    skipped = tmp_path / "fp8"
    skipped.mkdir()
    (skipped / "report.json").write_text(json.dumps({"name": "fp8_training", "skipped": "needs a GPU"}))
    md = compare_main(CompareConfig(reports=f"{a},{b},{other},{skipped}", baseline=f"{a}/report.json",
                                    out=tmp_path / "cmp.md"))
    assert "## Paired with `weak` (threshold 0.5)" in md
    paired_rows = [line for line in md.splitlines() if line.startswith("| `strong` | 0.7 | +")]
    assert len(paired_rows) == 1, md  # the baseline (given as its report.json) is not paired with itself
    assert "| `weak` | 0.5 | " not in md.split("## Paired")[1]
    assert "| `other` | 0.5 | — (paired comparison needs the same texts" in md
    assert "`fp8_training` | — (needs a GPU)" in md
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert "vs_baseline" not in saved[0] and saved[1]["vs_baseline"]["f1"]["lo"] > 0
    assert "vs_baseline" not in saved[3] and "error" in saved[2]["vs_baseline"]
    assert saved[1]["vs_baseline"]["benign_fpr"]["diff"] < 0 and saved[1]["ci95"]["f1"] == [1.0, 1.0]
    # One threshold for all: at 0.7 the weak model flags nothing, so its F1 drops to 0 in both tables.
    md = compare_main(CompareConfig(reports=f"{a},{b},{skipped}", baseline=a, threshold=0.7, out=tmp_path / "cmp.md"))
    assert "| `weak` | 0.000 |" in md and "## Paired with `weak` (threshold 0.7)" in md
    with pytest.raises(SystemExit, match="no report at"):
        compare_main(CompareConfig(reports=f"{a},{b}", baseline=str(tmp_path / "typo"), out=tmp_path / "cmp.md"))
    with pytest.raises(SystemExit, match="give --out"):  # no default file a run could overwrite
        compare_main(CompareConfig(reports=f"{a},{b}"))
    (tmp_path / "weak" / "scores.jsonl").unlink()
    with pytest.raises(SystemExit, match=r"no scores\.jsonl"):
        compare_main(CompareConfig(reports=f"{a},{b}", baseline=a, out=tmp_path / "cmp.md"))


def test_compare_restricts_every_report_to_the_texts_of_a_records_file(tmp_path: Path) -> None:
    # "old" scored 40 texts; "grown" scored those 40 plus 20 new ones on which it is perfect.
    gold = [(f"t{i}", "violence", i % 2 == 0) for i in range(40)]
    old = [ScoredPair(r, c, y, 0.9 if (y and r < "t3") or r.endswith("1") else 0.1) for r, c, y in gold]
    grown = [ScoredPair(r, c, y, 0.9 if y else 0.1) for r, c, y in gold] + [
        ScoredPair(f"n{i}", "violence", i % 2 == 0, 0.9 if i % 2 == 0 else 0.1) for i in range(20)]
    a = _report(tmp_path / "old", "old", old, 0.5)
    b = _report(tmp_path / "grown", "grown", grown, 0.4)
    md = compare_main(CompareConfig(reports=f"{a},{b}", baseline=a, out=tmp_path / "cmp.md"))
    assert "| `grown` | 0.4 | — (paired comparison needs the same texts" in md
    split = tmp_path / "test-v1.jsonl"
    split.write_text("".join(json.dumps({"id": r}) + "\n" for r, _, _ in gold))
    md = compare_main(CompareConfig(reports=f"{a},{b}", baseline=a, records=str(split), out=tmp_path / "cmp.md"))
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert [s["texts"] for s in saved] == [40, 40]
    assert saved[1]["threshold"] == 0.4 and saved[1]["overall"]["f1"] == 1.0  # its own threshold, on the 40 only
    assert saved[1]["vs_baseline"]["f1"]["diff"] > 0 and "| `grown` | 0.4 | +" in md
    with pytest.raises(SystemExit, match="no records file"):
        compare_main(CompareConfig(reports=a, records=str(tmp_path / "nope.jsonl"), out=tmp_path / "cmp.md"))
