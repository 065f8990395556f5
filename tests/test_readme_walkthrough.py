"""The README's CLI walk-through and quickstart, run literally (issue 13).

Every fenced ``bash`` block of the README's "CLI walk-through" section (subsections included) is
read out of README.md and each command runs as printed, through bash, with ``mixplan`` meaning
``python -m engine.cli`` of this checkout: in a fresh temporary directory holding a copy of
examples/ and nothing else (no database, no ../shared), so a README change that breaks a step,
or a command that stops working from a fresh clone, fails here. The quickstart's ``mixplan``
commands run the same way on a copy of the bundled runs.duckdb.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

pytestmark = pytest.mark.slow


def section(title: str) -> str:
    """The README text under ``## title`` up to the next ``## `` heading."""
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def commands(text: str) -> list[str]:
    """The commands of the ```bash blocks in ``text``: one per line (backslash continuations
    joined), comment-only and blank lines left out."""
    out: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        pending = ""
        for line in block.splitlines():
            line = pending + line
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if line.strip() and not line.lstrip().startswith("#"):
                out.append(line.strip())
    return out


def run_literally(cmds: list[str], cwd: Path, timeout_s: float = 300) -> list[tuple[str, float, str]]:
    """Run each command through bash as printed; ``export`` lines carry over to the commands
    after them (as in one shell). Fails on the first command that exits non-zero."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXPLAN_")}
    env.update({"PYTHONPATH": str(ROOT), "MIXPLAN_PY": sys.executable, "COLUMNS": "80",
                "MIXPLAN_CACHE": str(cwd / ".cache")})
    prelude = ['mixplan() { "$MIXPLAN_PY" -m engine.cli "$@"; }']
    done = []
    for cmd in cmds:
        first = cmd.split()[0]
        assert first in ("mixplan", "export"), f"the walk-through test runs mixplan and export lines only: {cmd!r}"
        t0 = time.monotonic()
        p = subprocess.run(["bash", "-c", "\n".join([*prelude, cmd])], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=timeout_s)
        out = p.stdout + p.stderr
        assert p.returncode == 0, f"README command failed (exit {p.returncode}): {cmd}\n{out[-3000:]}"
        if first == "export":
            prelude.append(cmd)
        done.append((cmd, time.monotonic() - t0, out))
    return done


def fresh_clone_dir(tmp_path: Path) -> Path:
    """A directory like a fresh clone for the walk-through: examples/ and no database."""
    work = tmp_path / "clone"
    shutil.copytree(ROOT / "examples", work / "examples")
    return work


def test_walkthrough_runs_as_printed(tmp_path: Path) -> None:
    cmds = commands(section("CLI walk-through"))
    # the walk-through covers the commands a newcomer needs
    for needed in ("study create", "propose", "approve", "reject", "run", "trials", "autopilot", "trajectory",
                   "predict", "optimum", "export ", "import", "study edit"):
        assert any(c.startswith(f"mixplan {needed}") for c in cmds), needed
    work = fresh_clone_dir(tmp_path)
    done = run_literally(cmds, work)
    outputs = {c: out for c, _, out in done}
    # ... and each step did what the README says
    from engine.store import Store

    db = work / "walkthrough.duckdb"
    assert not (work / "runs.duckdb").exists()  # everything went to the walk-through's own database
    store = Store(db, create=False)
    states = store.trials_frame("synthetic")["state"].value_counts().to_dict()
    assert states.get("rejected", 0) >= 1 and states.get("done", 0) >= 5
    trials_after_run = [out for c, out in outputs.items() if c.startswith("mixplan trials")]
    assert trials_after_run and "obs" in trials_after_run[-1]
    pred = pd.read_csv(work / "pred.csv")
    assert len(pred) == 3 and pred["pred_mean"].notna().all() and (pred["pred_std"] >= 0).all()
    blend = (work / "blend.txt").read_text().strip().splitlines()[-1].split()
    assert blend[1].startswith("data/") and blend[1].endswith("_text_document")
    assert len(pd.read_csv(work / "all_runs.csv")) > 0
    edited = store.get_config("my-runs")
    assert [s.model_params for s in edited.scales] == [100_000, 500_000] and edited.target.model_params == 500_000
    assert len(store.trials("my-runs", ["proposed"])) == 1
    slowest = sorted(done, key=lambda x: -x[1])[:3]
    print("slowest steps:", [(c, round(s, 1)) for c, s, _ in slowest])


def test_quickstart_ends_in_an_exported_mixture(tmp_path: Path) -> None:
    cmds = commands(section("Quickstart"))
    setup = [c for c in cmds if not c.startswith("mixplan ")]
    assert len(setup) == 1 and "scripts/setup.sh" in setup[0]  # the install this test already has
    cmds = [c for c in cmds if c.startswith("mixplan ")]
    assert len(cmds) == 3 and cmds[-1].startswith("mixplan export")
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copy(ROOT / "runs.duckdb", work / "runs.duckdb")  # the bundled study (a copy: export logs an event)
    if (ROOT / ".mixplan-cache" / "demo").is_dir():  # its precomputed recommendation, as a clone has it
        shutil.copytree(ROOT / ".mixplan-cache" / "demo", work / ".mixplan-cache" / "demo")
    done = run_literally(cmds, work)
    assert "64" in done[0][2] or "done 64" in done[0][2]
    from engine.export import parse_megatron

    blend = parse_megatron((work / "blend.txt").read_text())
    assert all(p.startswith("data/") for p in blend) and sum(blend.values()) == pytest.approx(1.0, abs=1e-5)
    # one recommended mixture: the optimum printed is the mixture exported
    table = {ln.split()[1]: float(ln.split()[3]) for ln in done[1][2].splitlines() if ln.count("│") == 3}
    exported = {p.removeprefix("data/").removesuffix("_text_document"): w for p, w in blend.items()}
    assert "an extrapolation: 3x the largest model size run" in done[1][2]
    table = {d: w for d, w in table.items() if w > 0}  # the blend leaves out the domains weighted 0
    assert table == pytest.approx({d: round(w, 4) for d, w in exported.items()}, abs=2e-4)
