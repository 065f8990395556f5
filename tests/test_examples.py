"""Every file in examples/ works from a fresh clone (no ../shared): each is created as a study and
goes through one propose -> approve -> run cycle with the CLI, or, where it needs something from
outside, its first line says what, and the test checks that running it without that thing fails
with exactly that message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHARED_WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "mfms-sim" / "weights.json"


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def cycle(db: Path, config: Path, strategy: str = "mfms-bo", *, as_user: bool = False) -> tuple[str, int, str]:
    """study create, propose 1, approve, run: (study name, exit code of run, its output).
    ``as_user``: the run step as the real command in its own process (exit status and message
    exactly as a user sees them)."""
    code, out = cli("study", "create", "--config", str(config), "--db", str(db))
    assert code == 0, out
    name = out.split("created study ")[1].split()[0]
    code, out = cli("propose", "--study", name, "--strategy", strategy, "-n", "1", "--json", "--db", str(db))
    assert code == 0, out
    assert len(json.loads(out)) == 1
    code, out = cli("approve", "--study", name, "--all", "--db", str(db))
    assert code == 0, out
    if as_user:
        p = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--study", name, "--workers", "1",
                            "--db", str(db)], capture_output=True, text=True, timeout=300, check=False)
        return name, p.returncode, p.stdout + p.stderr
    code, out = cli("run", "--study", name, "--workers", "1", "--db", str(db))
    return name, code, out


def first_line(path: Path) -> str:
    return path.read_text().splitlines()[0]


def test_every_example_has_a_test():
    covered = {"synthetic.toml", "command-runner.toml", "slimpajama-sim.toml",
               # the README walk-through's files (tests/test_readme_walkthrough.py runs them)
               "query.csv", "demo-runs.csv", "demo-runs-patch.toml"}
    assert {p.name for p in EXAMPLES.glob("*")} == covered


def test_synthetic_example_runs_and_knows_the_truth(tmp_path):
    db = tmp_path / "runs.duckdb"
    name, code, out = cycle(db, EXAMPLES / "synthetic.toml")
    assert code == 0, out
    from engine.store import Store

    runs = Store(db).runs_frame(name)
    assert runs["run_id"].nunique() == 1 and set(runs.filter(like="loss_").columns) == {
        "loss_web", "loss_code", "loss_books", "loss_science"}
    code, out = cli("trajectory", "--study", name, "--json", "--db", str(db))
    traj = json.loads(out)
    assert len(traj) == 1 and traj[0]["incumbent_true"] > 0 and traj[0]["incumbent_regret"] > 0


@pytest.mark.slow
def test_command_runner_example_trains_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXPLAN_CACHE", str(tmp_path / "corpus"))  # a fresh clone has no corpus yet
    db = tmp_path / "runs.duckdb"
    name, code, out = cycle(db, EXAMPLES / "command-runner.toml")
    assert code == 0, out
    from engine.store import Store

    runs = Store(db).runs_frame(name)
    assert runs["run_id"].nunique() == 1
    assert runs[["loss_code", "loss_docstrings", "loss_unicode"]].notna().all().all()
    assert (runs[["loss_code", "loss_docstrings", "loss_unicode"]] < 5.6).all().all()  # below a uniform byte guess


def test_slimpajama_example_says_what_it_needs(tmp_path, monkeypatch):
    from engine.simulators.mfms_sim import NEEDS

    path = EXAMPLES / "slimpajama-sim.toml"
    assert first_line(path) == f"# Needs: {NEEDS}"
    assert "github.com/namkoong-lab/data-recipes" in NEEDS and "MIXPLAN_MFMS_SIM" in NEEDS
    monkeypatch.setenv("MIXPLAN_MFMS_SIM", str(tmp_path / "no-weights-here.json"))
    _, code, out = cycle(tmp_path / "runs.duckdb", path, as_user=True)
    assert code == 2, out
    assert NEEDS in " ".join(out.split())  # rich wraps long lines


def test_slimpajama_example_runs_with_the_weights(tmp_path, monkeypatch):
    if not SHARED_WEIGHTS.exists():
        pytest.skip(f"simulator weights not found at {SHARED_WEIGHTS}")
    monkeypatch.setenv("MIXPLAN_MFMS_SIM", str(SHARED_WEIGHTS))
    _, code, out = cycle(tmp_path / "runs.duckdb", EXAMPLES / "slimpajama-sim.toml")
    assert code == 0, out
