"""engine.export and `mixplan export`: every format carries the mixture and its provenance."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest
import yaml

from engine.simulators.synthetic import create_study
from engine.errors import NotFoundError, ValidationError
from engine.export import FORMATS, Provenance, MixtureExport, from_run, log_export, parse_megatron, render, rounded
from engine.store import Store

W = {"web": 0.5, "code": 0.3333333, "books": 0.1666667}


@pytest.fixture
def ex():
    return MixtureExport(W, Provenance(study="s", source="optimum", objective="mean_loss", model="mfms-gp",
                                       pred_mean=2.91, pred_std=0.02, model_params=10**9, steps=19500,
                                       tokens=5.1e9, runs=3, run_ids=("a", "b", "c"), data_version=7))


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "e.duckdb"
    create_study(Store(path), "demo", n_runs=12, proposals=1)
    return path


def test_rounded_weights_sum_to_one():
    r = rounded({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert sum(r.values()) == pytest.approx(1.0, abs=1e-12)


def test_json_and_yaml_carry_provenance(ex):
    doc = json.loads(render(ex, "json"))
    assert doc["weights"]["web"] == 0.5 and sum(doc["weights"].values()) == pytest.approx(1)
    p = doc["provenance"]
    assert (p["study"], p["model"], p["pred_mean"], p["pred_std"], p["runs"]) == ("s", "mfms-gp", 2.91, 0.02, 3)
    assert p["run_ids"] == ["a", "b", "c"] and p["mixplan_version"] and p["created_at"]
    assert yaml.safe_load(render(ex, "yaml")) == doc


def test_megatron_blend(ex):
    text = render(ex, "megatron", prefix_template="data/{domain}_text_document")
    assert "# study: s" in text and "# pred_mean: 2.91" in text
    blend = parse_megatron(text)
    assert list(blend) == ["data/web_text_document", "data/code_text_document", "data/books_text_document"]
    assert sum(blend.values()) == pytest.approx(1.0, abs=1e-9)
    last = text.strip().splitlines()[-1]
    assert last.startswith("0.500000 data/web_text_document 0.333333")


def test_olmo_mixture_yaml(ex):
    doc = yaml.safe_load(render(ex, "olmo"))
    cfgs = doc["dataset"]["source_mixture_config"]["source_configs"]
    assert [c["source_name"] for c in cfgs] == ["web", "code", "books"]
    assert sum(c["target_ratio"] for c in cfgs) == pytest.approx(1)
    assert doc["dataset"]["source_mixture_config"]["max_tokens"] == 5_100_000_000
    assert "# model: mfms-gp" in render(ex, "olmo")


def test_hf_snippet_is_python_with_probabilities(ex):
    text = render(ex, "hf")
    tree = ast.parse(text)
    assert "interleave_datasets" in text
    assigns = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign)}
    probs = ast.literal_eval(assigns["PROBABILITIES"])
    assert list(probs) == ["web", "code", "books"] and sum(probs.values()) == pytest.approx(1)
    assert "study: s" in ast.get_docstring(tree)


def test_unknown_format_and_bad_prefix(ex):
    with pytest.raises(ValidationError, match="unknown export format"):
        render(ex, "csv")
    with pytest.raises(ValidationError, match="prefix template"):
        render(ex, "megatron", prefix_template="{dom}")


def test_from_run_and_event(db):
    store = Store(db)
    ex = from_run(store, "demo", run_id="r0003")
    assert ex.provenance.run_id == "r0003" and ex.provenance.observed is not None
    assert sum(ex.weights.values()) == pytest.approx(1)
    log_export(store, ex, "json")
    ev = store.events("demo", limit=1)
    assert ev["kind"].iloc[0] == "export" and json.loads(ev["detail"].iloc[0])["format"] == "json"
    with pytest.raises(NotFoundError):
        from_run(store, "demo", run_id="nope")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_export_run(db, tmp_path, fmt):
    out = tmp_path / f"mix.{fmt}"
    r = _cli("export", "--study", "demo", "--format", fmt, "--run", "r0001", "--out", str(out), "--db", str(db))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "r0001" in text and "demo" in text
    ev = Store(db).events("demo", limit=1)
    assert ev["kind"].iloc[0] == "export"


def test_cli_export_optimum_to_stdout(db):
    from engine.export import available_models

    if "mixing-law" not in available_models():
        pytest.skip("loss models not installed")
    r = _cli("export", "--study", "demo", "--format", "json", "--model", "mixing-law", "--db", str(db))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["provenance"]["model"] == "mixing-law" and doc["provenance"]["runs"] == 12
    assert doc["provenance"]["model_params"] == 1_000_000_000
    assert sum(doc["weights"].values()) == pytest.approx(1)


def test_cli_export_errors_are_messages(db):
    r = _cli("export", "--study", "nope", "--run", "r1", "--db", str(db))
    assert r.returncode == 2 and "no study named 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = _cli("export", "--study", "demo", "--format", "xml", "--run", "r0001", "--db", str(db))
    assert r.returncode == 2 and "unknown format" in r.stderr
