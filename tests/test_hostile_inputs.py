"""Hostile input and faults (issues 15 and 16): every refusal is one clear message (what, where,
how to fix; exit 2 through `mixplan`'s real entry point, no traceback) and changes nothing
stored. Each test compares the study's run table, trials, domains and data_version before and
after."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from engine.cli import main
from engine.config import config_from_dict
from engine.errors import ConfigError, ValidationError
from engine.records import Proposal, TrialState
from engine.store import Store
from fixtures.dispatch_helpers import DOMAINS, add_approved, command_study, fake_argv

REPO = Path(__file__).resolve().parents[1]


def mixplan(capsys, *args: object) -> tuple[int, str, str]:
    """Run `mixplan ARGS` through its entry point (engine.cli.main), as a shell would: returns
    (exit status, stdout, stderr)."""
    argv = sys.argv
    sys.argv = ["mixplan", *map(str, args)]
    try:
        main()
        rc = 0
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return rc, out, err


def refused(capsys, *args: object) -> str:
    """`mixplan ARGS` must fail with status 2 and one message, no traceback; returns stderr
    on one line (rich may wrap)."""
    rc, out, err = mixplan(capsys, *args)
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and err.startswith("error: "), err
    return " ".join(err.split())


def snapshot(db: Path, study: str) -> dict:
    """What a study holds: its run table, trials, domains and data_version."""
    store = Store(db, create=False)
    return {"runs": store.export_frame(study), "trials": store.trials_frame(study),
            "domains": store.study_domains(study), "version": store.data_version(study)}


def assert_unchanged(before: dict, db: Path, study: str) -> None:
    after = snapshot(db, study)
    pd.testing.assert_frame_equal(after["runs"], before["runs"])
    pd.testing.assert_frame_equal(after["trials"], before["trials"])
    assert after["domains"] == before["domains"] and after["version"] == before["version"]


@pytest.fixture
def imported(tmp_path: Path, data_dir: Path, capsys) -> Path:
    """A database holding study `s`, imported from tests/data/runs_checkpoints.csv."""
    db = tmp_path / "runs.duckdb"
    rc, _, err = mixplan(capsys, "import", data_dir / "runs_checkpoints.csv", "--study", "s", "--db", db)
    assert rc == 0, err
    return db


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---- 15.1, 15.2, 16.2, 16.5: --out ---------------------------------------------------------------
EXPORTS = {"export-runs": ["export-runs", "--study", "s"],
           "export": ["export", "--study", "s", "--run", "a", "--format", "json"]}


@pytest.mark.parametrize("cmd", sorted(EXPORTS))
def test_a_bad_out_is_refused_and_writes_nothing(cmd: str, imported: Path, tmp_path: Path, capsys) -> None:
    before, db_bytes, names = snapshot(imported, "s"), imported.read_bytes(), files_in(tmp_path)
    (tmp_path / "link.csv").symlink_to(imported)
    names.add("link.csv")
    cases = [
        (tmp_path, "is a folder, not a file. Fix: give a file name"),
        (imported, "is the database this command reads (or one of its files); writing there would destroy it"),
        (Path(str(imported) + ".wal"), "is the database this command reads"),
        (tmp_path / "link.csv", "is the database this command reads"),
        (Path("/proc/mixplan-out.csv"), "cannot write it"),
        (Path("/dev/null"), "is not a regular file"),
        (tmp_path / "runs.duckdb" / "x.csv", "is a file, not a folder"),
    ]
    for out, message in cases:
        for force in ([], ["--force"]):  # --force never makes any of these writable
            err = refused(capsys, *EXPORTS[cmd], "--out", out, *force, "--db", imported)
            assert f"--out {out}" in err and message in err and "Fix:" in err, err
    assert imported.read_bytes() == db_bytes and files_in(tmp_path) == names
    assert_unchanged(before, imported, "s")


@pytest.mark.parametrize("cmd", sorted(EXPORTS))
def test_an_existing_file_is_kept_unless_force(cmd: str, imported: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine.csv"
    out.write_text("my own data\n")
    err = refused(capsys, *EXPORTS[cmd], "--out", out, "--db", imported)
    assert f"--out {out} exists already; it is not overwritten. Fix: pass --force to overwrite it" in err
    assert out.read_text() == "my own data\n"
    rc, _, err = mixplan(capsys, *EXPORTS[cmd], "--out", out, "--force", "--db", imported)
    assert rc == 0, err
    assert out.read_text() != "my own data\n" and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    if cmd == "export-runs":  # what was written is the study's run table, whole
        pd.testing.assert_frame_equal(pd.read_csv(out), Store(imported).export_frame("s"), check_dtype=False)


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    """Atomic: the content goes to a temporary file that is renamed in only when complete."""
    from engine.outfile import write_out_file

    out = tmp_path / "table.csv"
    out.write_text("old\n")

    def half_then_crash(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_out_file(out, half_then_crash, overwrite=True)
    assert out.read_text() == "old\n" and files_in(tmp_path) == {"table.csv"}
    # what a writer killed with -9 left behind goes with the next write (a live writer's stays)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale, live = (tmp_path / f".table.csv.tmp-{host}-{pid}-abcd" for pid in (dead.pid, os.getpid()))
    stale.write_text("half")
    live.write_text("being written")
    write_out_file(out, lambda tmp: tmp.write_text("new\n"), overwrite=True)
    assert out.read_text() == "new\n" and files_in(tmp_path) == {"table.csv", live.name}


def test_predict_never_writes_over_the_database(imported: Path, data_dir: Path, capsys) -> None:
    db_bytes = imported.read_bytes()
    err = refused(capsys, "predict", "--study", "s", "--model", "uniform", "--query",
                  data_dir / "runs_checkpoints.csv", "--out", imported, "--db", imported)
    assert "is the database this command reads" in err and imported.read_bytes() == db_bytes


@pytest.mark.parametrize("db_case", ["folder", "proc"])
def test_a_bad_db_path_is_one_message(db_case: str, tmp_path: Path, data_dir: Path, capsys) -> None:
    db = tmp_path if db_case == "folder" else Path("/proc/mixplan.duckdb")
    err = refused(capsys, "study", "create", "--config", data_dir / "study_small.toml", "--db", db)
    assert ("is a folder, not a database file" if db_case == "folder" else "cannot open the database") in err


# ---- 15.3, 15.4: failed command-runner trials ---------------------------------------------------
def test_a_failed_trial_reason_ends_with_its_log_and_the_log_is_capped(tmp_path: Path, capsys) -> None:
    """A crashing trainer's reason ends with the last lines it printed (`mixplan run`, `study
    show`); a trainer printing 3 MB keeps 64 kB of run.log: its first and last 32 kB, with the
    dropped amount said in between."""
    from engine.dispatch import run_approved

    db = tmp_path / "runs.duckdb"
    store = command_study(db, runner={"kind": "command", "argv": fake_argv("--chatty-mb", "3"), "timeout_s": 60,
                                      "kill_grace_s": 1.0, "log_max_bytes": 65536})
    add_approved(store, "cmd", ["crash-1", "chatty-1"])
    summary = run_approved(store, "cmd", workers=2, poll_s=0.1)
    assert sorted(summary.failed) == [1, 2]
    reasons = {t.run_id: t.reason for t in store.trials("cmd")}
    assert reasons["crash-1"].startswith("the program exited with status 3; its log ends with:")
    assert "RuntimeError: simulated crash" in reasons["crash-1"]
    assert reasons["chatty-1"].startswith("the program exited with status 7; its log ends with:")
    assert reasons["chatty-1"].rstrip().endswith("the last words of a chatty trainer")
    log = next((tmp_path / "mixplan-runs" / "cmd" / "chatty-1").glob("*/run.log"))
    text = log.read_text()
    assert 65536 < log.stat().st_size < 65536 + 2000  # + mixplan's own header and footer lines
    assert "fake trainer: weights=" in text.splitlines()[1]  # the head: the program's first line
    dropped = int(text.split("=== mixplan: ")[2].split(" bytes of output dropped here")[0].replace(",", ""))
    assert dropped > 2_800_000 and "runner.log_max_bytes = 65,536 keeps the first and the last 32,768" in text
    assert text.rstrip().splitlines()[-2] == "the last words of a chatty trainer"
    rc, out, _ = mixplan(capsys, "study", "show", "cmd", "--db", db)
    assert rc == 0 and "RuntimeError: simulated crash" in out and "the last words of a chatty trainer" in out


def test_the_log_cap_is_a_checked_runner_key() -> None:
    base = {"name": "c", "domains": DOMAINS, "runner": {"kind": "command", "argv": ["t", "{out_dir}"]}}
    for bad in (10, 1.5e3 + 0.5, "big", -1):
        with pytest.raises(ConfigError, match=r"key 'runner.log_max_bytes': expected a whole number >= 1024"):
            config_from_dict({**base, "runner": {**base["runner"], "log_max_bytes": bad}})


# ---- 15.5: a target beyond the scales ---------------------------------------------------------------
def test_a_target_beyond_the_scales_is_accepted_and_said(tmp_path: Path, capsys) -> None:
    db = tmp_path / "runs.duckdb"
    cfg = tmp_path / "far.toml"
    cfg.write_text('name = "far"\ndomains = ["a", "b"]\ntokens_per_step = 1000\n'
                   '[[scales]]\nmodel_params = 20_000_000\nsteps = [1000, 2000]\n'
                   "[[scales]]\nmodel_params = 100_000_000\nsteps = [500]\n"
                   "[target]\nmodel_params = 1_000_000_000\nsteps = 19_500\n")
    rc, out, _ = mixplan(capsys, "study", "create", "--config", cfg, "--db", db)
    out = " ".join(out.split())
    assert rc == 0 and "created study far" in out
    note = ("the target (1,000,000,000 params, 19,500 steps) is not among the scales: 10x the largest size on offer "
            "(100,000,000 params) and 9.75x the longest run on offer (2,000 steps)")
    assert note in out
    rc, out, _ = mixplan(capsys, "study", "show", "far", "--db", db)
    assert rc == 0 and note in " ".join(out.split())
    rc, out, _ = mixplan(capsys, "study", "show", "far", "--db", db, "--json")
    assert json.loads(out)["target_reach"]["size_ratio"] == 10.0
    near = tmp_path / "near.toml"  # a target on offer: nothing to say
    near.write_text(cfg.read_text().replace('"far"', '"near"').replace("1_000_000_000", "100_000_000")
                    .replace("19_500", "500"))
    rc, out, _ = mixplan(capsys, "study", "create", "--config", near, "--db", db)
    assert rc == 0 and "not among the scales" not in out


# ---- 15.6: misleading messages -------------------------------------------------------------------------
def test_a_bad_study_name_blames_the_study_name(imported: Path, data_dir: Path, capsys) -> None:
    before = snapshot(imported, "s")
    err = refused(capsys, "import", data_dir / "runs_checkpoints.csv", "--study", "../../x", "--db", imported)
    assert err.startswith("error: --study '../../x' is not a usable study name") and "runs_checkpoints" not in err
    assert Store(imported).study_names() == ["s"]
    assert_unchanged(before, imported, "s")


@pytest.mark.parametrize("sep,what", [(";", "semicolons"), ("\t", "tabs")])
def test_a_semicolon_or_tab_table_gets_a_delimiter_hint(sep: str, what: str, imported: Path, data_dir: Path,
                                                        tmp_path: Path, capsys) -> None:
    before = snapshot(imported, "s")
    bad = tmp_path / "t.csv"
    bad.write_text((data_dir / "runs_checkpoints.csv").read_text().replace(",", sep))
    err = refused(capsys, "import", bad, "--study", "t", "--db", imported)
    assert f"{bad}: the header is separated by {what}, not commas" in err
    assert "Fix: save the table as comma-separated CSV" in err and "unknown column" not in err
    assert_unchanged(before, imported, "s")


def test_files_are_read_by_their_content_not_their_name(data_dir: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "runs.duckdb"
    parquet_named_csv, csv_named_parquet = tmp_path / "runs.csv", tmp_path / "runs.parquet"
    pd.read_csv(data_dir / "runs_checkpoints.csv").to_parquet(parquet_named_csv)
    csv_named_parquet.write_text((data_dir / "runs_checkpoints.csv").read_text())
    notes = {}
    for study, f in (("p", parquet_named_csv), ("c", csv_named_parquet)):
        rc, out, err = mixplan(capsys, "import", f, "--study", study, "--db", db, "--json")
        assert rc == 0, err
        notes[study] = json.loads(out)["notes"]
    assert notes["p"][0] == ("runs.csv holds Parquet data, not CSV text (its bytes start with PAR1): read it as "
                             "Parquet; rename it to .parquet")
    assert notes["c"][0].startswith("runs.parquet holds text, not Parquet")
    store = Store(db)
    pd.testing.assert_frame_equal(store.export_frame("p"), store.export_frame("c"))


def test_run_of_a_missing_study_errors_before_any_progress_bar(imported: Path, capsys) -> None:
    for args in (["run", "--study", "MISSING"], ["autopilot", "--study", "MISSING", "--budget", "1"]):
        rc, out, err = mixplan(capsys, *args, "--db", imported)
        assert rc == 2 and out == "" and err.startswith("error: no study named 'MISSING'") and "━" not in err


# ---- 16.3: runner results checked like an import ---------------------------------------------------------
def test_runner_results_are_checked_like_an_import(tmp_path: Path, data_dir: Path, capsys) -> None:
    """A result with an unknown loss name, a negative loss, steps beyond the trial or beyond int64
    fails its trial with the reason; nothing of it is stored and the other runs are untouched."""
    from engine.dispatch import run_approved

    db = tmp_path / "runs.duckdb"
    store = command_study(db)
    store.import_runs("cmd", pd.read_csv(data_dir / "runs_checkpoints.csv", dtype={"run_id": str}))
    before = snapshot(db, "cmd")
    add_approved(store, "cmd", ["unknown-1", "negative-1", "beyond-1", "huge-1", "ok-1"])
    summary = run_approved(store, "cmd", workers=2, poll_s=0.1)
    reasons = {t.run_id: t.reason for t in store.trials("cmd") if t.state == TrialState.FAILED}
    assert set(reasons) == {"unknown-1", "negative-1", "beyond-1", "huge-1"} and len(summary.done) == 1
    assert ("column 'loss_zzz_unknown': the run reports loss 'zzz_unknown', which is not an evaluation domain of "
            "study 'cmd' (web, code, books); nothing of this result was stored. Fix: report losses for the study's "
            "evaluation domains only") in reasons["unknown-1"]
    assert "unknown_values = \"keep\"" in reasons["unknown-1"]
    assert "column 'loss_code': the loss is -0.5; a validation loss (cross-entropy) is >= 0" in reasons["negative-1"]
    assert "column 'steps': the checkpoint is at steps = 10000, beyond the trial's 30 steps" in reasons["beyond-1"]
    assert "column 'steps': steps must be a whole number from 0 to 9.22e+18, got 1e+30" in reasons["huge-1"]
    for r in reasons.values():
        assert r.startswith("could not store the result: the result of trial ")
    after = snapshot(db, "cmd")
    assert after["domains"] == before["domains"]
    assert set(after["runs"]["run_id"]) == set(before["runs"]["run_id"]) | {"ok-1"}
    pd.testing.assert_frame_equal(after["runs"][after["runs"]["run_id"] != "ok-1"].reset_index(drop=True),
                                  before["runs"])
    mean_loss = after["runs"][[f"loss_{d}" for d in DOMAINS]].mean(axis=1)
    assert mean_loss.notna().all()
    rc, out, _ = mixplan(capsys, "export-runs", "--study", "cmd", "--out", tmp_path / "all.csv", "--db", db)
    assert rc == 0  # and the exported table imports again
    rc, _, err = mixplan(capsys, "import", tmp_path / "all.csv", "--study", "again", "--db", db)
    assert rc == 0, err


def test_unknown_values_can_be_kept_apart(tmp_path: Path) -> None:
    from engine.dispatch import run_approved

    db = tmp_path / "runs.duckdb"
    store = command_study(db, runner={"kind": "command", "argv": fake_argv(), "timeout_s": 30,
                                      "unknown_values": "keep"})
    with pytest.raises(ConfigError, match="key 'runner.unknown_values': got 'maybe'"):
        config_from_dict({"name": "x", "domains": DOMAINS, "runner": {"kind": "builtin", "unknown_values": "maybe"}})
    # the study's evaluation domains are known from a first run, then a run brings a new name
    add_approved(store, "cmd", ["ok-1"])
    run_approved(store, "cmd", workers=1, poll_s=0.1)
    add_approved(store, "cmd", ["unknown-1"])
    summary = run_approved(store, "cmd", workers=1, poll_s=0.1)
    assert summary.done and not summary.failed
    assert store.study_domains("cmd")["eval"] == ["code", "books", "web"]
    assert "loss_zzz_unknown" not in store.export_frame("cmd").columns
    tid = next(t.trial_id for t in store.trials("cmd") if t.run_id == "unknown-1")
    ev = store.events("cmd", trial_id=tid)
    kept = json.loads(ev[ev["kind"] == "done"]["detail"].iloc[0])["info"]["kept_apart"]
    assert [k["losses"] for k in kept] == [{"zzz_unknown": 1.0}] * 3 and [k["steps"] for k in kept] == [10, 20, 30]


# ---- 16.4: rich markup in user text ----------------------------------------------------------------------
def test_markup_in_user_text_is_printed_as_given(data_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    from engine.cli import common

    monkeypatch.setattr(common.console, "width", 400)  # the wide table whole, run ids unabridged
    db = tmp_path / "runs.duckdb"
    text = (data_dir / "runs_checkpoints.csv").read_text()
    bad_cell = tmp_path / "cell.csv"
    lines = text.splitlines()
    lines[2] = lines[2].replace(",0.5,", ",[/],", 1)
    bad_cell.write_text("\n".join(lines) + "\n")
    err = refused(capsys, "import", bad_cell, "--study", "m", "--db", db)
    assert "line 3, column 'w_web': '[/]' is not a number" in err and not db.exists()
    ids = tmp_path / "ids.csv"
    ids.write_text(text.replace("\na,", "\n[red]a,").replace("\nb,", "\n[bold],"))
    rc, out, err = mixplan(capsys, "import", ids, "--study", "m", "--db", db)
    assert rc == 0, err
    rc, out, err = mixplan(capsys, "trials", "--study", "m", "--db", db, "--wide")  # --wide shows run ids
    assert rc == 0 and "[red]a" in out and "[bold]" in out, out + err
    cfg = tmp_path / "d.toml"
    cfg.write_text('name = "d"\ndomains = ["a", "b"]\ndescription = "uses [/] and [bold]brackets[/bold]"\n')
    assert mixplan(capsys, "study", "create", "--config", cfg, "--db", db)[0] == 0
    rc, out, _ = mixplan(capsys, "study", "show", "d", "--db", db)
    assert rc == 0 and "uses [/] and [bold]brackets[/bold]" in out


def test_errors_naming_toml_tables_print_them(imported: Path, tmp_path: Path, capsys) -> None:
    """The fixes name [[scales]] and [target] literally (they were read as markup and vanished)."""
    err = refused(capsys, "propose", "--study", "s", "--strategy", "random", "--db", imported)
    assert "[target]" in err, err
    cfg = tmp_path / "twice.toml"
    cfg.write_text('name = "t"\ndomains = ["a", "b"]\n[[scales]]\nmodel_params = 1000\nsteps = [10]\n'
                   "[[scales]]\nmodel_params = 1000\nsteps = [20]\n")
    err = refused(capsys, "study", "create", "--config", cfg, "--db", imported)
    assert "key 'scales[1].model_params': size 1000 is listed twice. Fix: merge the two [[scales]]." in err


# ---- 16.5 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("column,value,message", [
    ("steps", "1e30", "column 'steps': steps must be a whole number from 0 to 9.22e+18, got 1e+30."),
    ("steps", "99999999999999999999", "column 'steps': steps must be a whole number from 0 to 9.22e+18"),
    ("steps", "100.5", "column 'steps': steps must be a whole number"),
    ("model_params", "1e30", "column 'model_params': model_params must be a positive integer, got 1e+30."),
    ("run_id", "../../etc/x", "column 'run_id': run_id '../../etc/x' holds a path separator"),
    ("run_id", "/abs", "column 'run_id': run_id '/abs' holds a path separator"),
    ("run_id", "..", "column 'run_id': run_id '..' is a relative folder name"),
])
def test_cells_out_of_range_are_refused_naming_the_cell(column: str, value: str, message: str, imported: Path,
                                                         data_dir: Path, tmp_path: Path, capsys) -> None:
    before = snapshot(imported, "s")
    table = pd.read_csv(data_dir / "runs_checkpoints.csv", dtype=str)
    table.loc[table["run_id"] == "b", column] = value  # every row of run b (its first on line 5)
    bad = tmp_path / "bad.csv"
    table.to_csv(bad, index=False)
    err = refused(capsys, "import", bad, "--study", "s2", "--db", imported)
    assert f"{bad}, line 5, {message}" in err and "Fix:" in err, err
    assert_unchanged(before, imported, "s")


@pytest.mark.parametrize("run_id", ["../../escaped", "/tmp/abs", "a/b", "..", "a\\b", "x" * 201])
def test_the_python_api_refuses_run_ids_that_are_paths(run_id: str, tmp_path: Path) -> None:
    store = command_study(tmp_path / "runs.duckdb")
    add_approved(store, "cmd", ["fine-1"])
    before = snapshot(store.path, "cmd")
    with pytest.raises(ValidationError, match=r"proposal 1: run_id .* a run id names the run's folder"):
        store.add_trials("cmd", [Proposal({"code": 0.4, "books": 0.3, "web": 0.3}, 100_000, steps=30,
                                          run_id=run_id)], state=TrialState.APPROVED)
    frame = pd.DataFrame({"run_id": [run_id], "model_params": [100_000], "steps": [30], "w_code": [0.4],
                          "w_books": [0.3], "w_web": [0.3], "loss_code": [3.0], "loss_books": [3.0], "loss_web": [3.0]})
    with pytest.raises(ValidationError, match="a run id names the run's folder"):
        store.import_runs("cmd", frame)
    assert_unchanged(before, store.path, "cmd")
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("budget", ["nan", "inf", "-1", "0"])
def test_a_bad_budget_is_refused_and_json_stays_json(budget: str, imported: Path, capsys) -> None:
    before = snapshot(imported, "s")
    rc, out, err = mixplan(capsys, "autopilot", "--study", "s", "--budget", budget, "--json", "--db", imported)
    assert rc == 2 and out == "" and f"--budget must be a finite number > 0, got {float(budget):g}." in err
    assert_unchanged(before, imported, "s")


def test_json_output_is_always_json(capsys) -> None:
    from engine.cli.common import print_json

    print_json({"pred": float("nan"), "std": [float("inf"), 1.5]})
    assert json.loads(capsys.readouterr().out) == {"pred": None, "std": [None, 1.5]}


@pytest.mark.parametrize("key,value,message", [
    ("poll_s", '"fast"', "expected a finite number >0, got 'fast'"),
    ("poll_s", "0", "expected a finite number >0, got 0"),
    ("kill_grace_s", "-1", "expected a finite number >=0, got -1"),
    ("workers", "-3", "expected a whole number >= 1, got -3"),
    ("workers", "2.5", "expected a whole number >= 1, got 2.5"),
    ("timeout_s", "nan", "expected a positive number, got nan"),
    ("retries", "-1", "expected an integer >= 0, got -1"),
    ("env", '{A = [1]}', "expected a table of NAME = \"value\""),
    ("cwd", "3", "expected a string, got 3"),
])
def test_runner_keys_are_checked_at_study_create(key: str, value: str, message: str, imported: Path,
                                                 tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "c"\ndomains = ["a", "b"]\n[runner]\nkind = "command"\nargv = ["t", "{{out_dir}}"]\n'
                   f"{key} = {value}\n")
    err = refused(capsys, "study", "create", "--config", cfg, "--db", imported)
    assert f"{cfg}: key 'runner.{key}': {message}" in err, err
    assert Store(imported).study_names() == ["s"]


def test_every_runner_and_executor_key_has_a_rule() -> None:
    from engine.config import EXECUTOR_OPTION_KEYS, RUNNER_KEYS, RUNNER_OPTION_TYPES

    unchecked = set().union(*RUNNER_KEYS.values(), EXECUTOR_OPTION_KEYS) - set(RUNNER_OPTION_TYPES)
    assert unchecked == {"match", "max_distance"}  # the table runner's own, checked when it is built


def test_a_killed_import_into_a_new_database_leaves_nothing_behind(data_dir: Path, tmp_path: Path, capsys) -> None:
    """kill -9 while a new database is being built leaves its hidden files; the next open of that
    database path removes them (those of a live process stay)."""
    db = tmp_path / "new.duckdb"
    code = ("import sys, time; from engine.store import Store; "
            "Store.create_with(sys.argv[1], lambda s: time.sleep(120))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(db)], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 60
        while not [p for p in tmp_path.iterdir() if p.name.startswith(".new.duckdb.new-")]:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert left and all(n.startswith(".new.duckdb.new-") for n in left)
    live = tmp_path / f".new.duckdb.new-{socket.gethostname()}-{os.getpid()}-abcd1234"
    live.write_bytes(b"")  # a build of a process that is alive (this one): left alone
    rc, _, err = mixplan(capsys, "import", data_dir / "runs_checkpoints.csv", "--study", "s", "--db", db)
    assert rc == 0, err
    assert files_in(tmp_path) - {"new.duckdb.lock", "new.duckdb.gate"} == {"new.duckdb", live.name}


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    """The one atomic writer (spool records, runner inputs, trainer results, the recommendation
    cache): the old file stays whole when the write fails, no temp file is left, and the
    requested permissions are set whatever the umask (the cache must be readable by the app
    run as another user)."""
    from engine.outfile import write_atomic

    path = tmp_path / "result.json"
    old = os.umask(0o077)
    try:
        write_atomic(path, '{"a": 1}', mode=0o644)
    finally:
        os.umask(old)
    assert path.read_text() == '{"a": 1}' and (path.stat().st_mode & 0o777) == 0o644
    write_atomic(path, b'{"a": 2}', durable=True)
    assert path.read_text() == '{"a": 2}'
    with pytest.raises(OSError):
        write_atomic(tmp_path / "missing-folder" / "x.json", "{}")
    with pytest.raises(TypeError):
        write_atomic(path, 3.5)  # type: ignore[arg-type]  # the write fails after the temp file exists
    assert path.read_text() == '{"a": 2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
