"""engine.training.cli_train: the built-in trainer as a contract-3 command; the trainer bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.data import build_local_corpus
from engine.training import cli_train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    build_local_corpus(root, max_bytes_per_domain=100_000, max_val_bytes=20_000)
    return root


def _check_contract(result: dict, domains: set[str]) -> None:
    """DESIGN.md contract 3: {"checkpoints": [{"tokens", "steps", "losses", "metrics"}], "cost"}."""
    assert set(result) >= {"checkpoints", "cost"}
    assert isinstance(result["cost"], (int, float)) and result["cost"] > 0
    assert result["checkpoints"]
    for ck in result["checkpoints"]:
        assert set(ck) >= {"tokens", "steps", "losses", "metrics"}
        assert isinstance(ck["steps"], int) and isinstance(ck["tokens"], (int, float))
        assert set(ck["losses"]) == domains
        assert all(isinstance(v, float) for v in ck["losses"].values())
        assert isinstance(ck["metrics"], dict)


def test_cli_train_writes_contract_result(corpus_dir, tmp_path):
    (tmp_path / "w.json").write_text(json.dumps({"code": 0.7, "unicode": 0.3}))
    out = tmp_path / "out"
    rc = cli_train.main(["--weights", str(tmp_path / "w.json"), "--params", "100000", "--steps", "6",
                         "--out", str(out), "--corpus", str(corpus_dir), "--eval-every", "3",
                         "--batch-size", "4", "--context", "32", "--eval-batches", "1", "--quiet"])
    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    _check_contract(result, {"code", "docstrings", "unicode"})
    assert [c["steps"] for c in result["checkpoints"]] == [3, 6]
    assert [c["tokens"] for c in result["checkpoints"]] == [3 * 4 * 32, 6 * 4 * 32]
    n = result["info"]["model_params"]
    assert result["cost"] == 6 * n * 6 * 4 * 32
    assert result["info"]["size"] == "0.1M" and result["info"]["weights"] == {"code": 0.7, "unicode": 0.3}
    progress = json.loads((out / "progress.json").read_text())
    assert progress["checkpoints"] == result["checkpoints"]
    assert not list(out.glob(".*.tmp"))


def test_cli_train_tokens_instead_of_steps(corpus_dir, tmp_path):
    (tmp_path / "w.json").write_text(json.dumps({"docstrings": 1}))
    rc = cli_train.main(["--weights", str(tmp_path / "w.json"), "--params", "0.1M", "--tokens", "500",
                         "--out", str(tmp_path / "o"), "--corpus", str(corpus_dir), "--batch-size", "4",
                         "--context", "32", "--eval-batches", "1", "--quiet"])
    assert rc == 0
    result = json.loads((tmp_path / "o" / "result.json").read_text())
    assert result["checkpoints"][-1]["steps"] == 4  # ceil(500 / 128)


def test_cli_train_bad_input_exits_2(corpus_dir, tmp_path, capsys):
    (tmp_path / "w.json").write_text(json.dumps({"klingon": 1}))
    rc = cli_train.main(["--weights", str(tmp_path / "w.json"), "--params", "1e5", "--steps", "2",
                         "--out", str(tmp_path / "o"), "--corpus", str(corpus_dir), "--quiet"])
    assert rc == 2 and "klingon" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    rc = cli_train.main(["--weights", str(tmp_path / "bad.json"), "--params", "1e5", "--steps", "2",
                         "--out", str(tmp_path / "o"), "--corpus", str(corpus_dir), "--quiet"])
    assert rc == 2 and "JSON" in capsys.readouterr().err
    assert not (tmp_path / "o" / "result.json").exists()


@pytest.mark.slow
def test_cli_train_as_a_subprocess_argv(corpus_dir, tmp_path):
    """What the command runner does: an argv (no shell) with the contract's placeholders filled."""
    (tmp_path / "w.json").write_text(json.dumps({"code": 1}))
    argv = [sys.executable, "-m", "engine.training.cli_train", "--weights", str(tmp_path / "w.json"),
            "--params", "100000", "--steps", "3", "--out", str(tmp_path / "run1"), "--corpus",
            str(corpus_dir), "--batch-size", "2", "--context", "16", "--eval-batches", "1"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ladder rung 0.1M" in proc.stderr
    _check_contract(json.loads((tmp_path / "run1" / "result.json").read_text()),
                    {"code", "docstrings", "unicode"})


def test_trainer_bench_reports_ratio(corpus_dir):
    from engine.bench.trainer_bench import format_trainer_bench, run_trainer_bench
    from engine.data import Corpus

    res = run_trainer_bench(["0.1M"], steps=3, batch_size=2, context=16, repeats=1,
                            corpus=Corpus.load(corpus_dir))
    row = res["rows"][0]
    assert row["size"] == "0.1M" and row["trainer_tokens_per_s"] > 0 and row["plain_tokens_per_s"] > 0
    assert row["ratio"] == pytest.approx(row["trainer_tokens_per_s"] / row["plain_tokens_per_s"])
    # both sides leave the warm-up step out of tokens/s and report its time apart
    assert row["warmup_steps"] == 1 and row["trainer_warmup_s"][0] > 0 and row["plain_warmup_s"][0] > 0
    assert row["trainer_compile_s"] == [0.0]
    assert "0.1M" in format_trainer_bench(res)
