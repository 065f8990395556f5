"""`mixplan import`: every bad input is refused with file, row, column and fix, and the database
is left exactly as it was; good tables (run tables with checkpoints, RegMix pairs) round-trip."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.errors import MixplanError, ValidationError
from engine.runtable import read_run_table, write_run_table
from engine.store import Store

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def dump(db: Path) -> dict[str, list]:
    """Every row of every table (timestamps included), to prove nothing changed."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()]
        return {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for t in tables}
    finally:
        con.close()


@pytest.fixture
def good(data_dir: Path) -> str:
    return (data_dir / "runs_checkpoints.csv").read_text()


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database holding study 's1' for the refusal tests (each proves it stays unchanged)."""
    db = tmp_path_factory.mktemp("shared") / "runs.duckdb"
    src = Path(__file__).resolve().parent / "data" / "runs_checkpoints.csv"
    r = cli("import", src, "--study", "s1", "--db", db)
    assert r.exit_code == 0, r.output
    return db


@pytest.fixture
def db_with_study(shared_db: Path) -> Path:
    return shared_db


def edit(text: str, row: int, column: str, value: str) -> str:
    """Set one cell (1-based data row) of a CSV text."""
    lines = text.strip().split("\n")
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


def drop_column(text: str, column: str) -> str:
    lines = [ln.split(",") for ln in text.strip().split("\n")]
    j = lines[0].index(column)
    return "\n".join(",".join(c for k, c in enumerate(ln) if k != j) for ln in lines) + "\n"


def rename_column(text: str, old: str, new: str) -> str:
    head, rest = text.split("\n", 1)
    return ",".join(new if c == old else c for c in head.split(",")) + "\n" + rest


def assert_refused(db: Path, path: Path, *pieces: str, study: str = "s1", extra: tuple[str, ...] = ()) -> ValidationError:
    before = dump(db)
    r = cli("import", path, *extra, "--study", study, "--db", db)
    assert r.exit_code != 0
    exc = r.exception
    assert isinstance(exc, ValidationError), r.output
    msg = str(exc)
    for p in pieces:
        assert p in msg, f"{p!r} not in {msg!r}"
    assert exc.fix, msg
    assert dump(db) == before, "the database changed after a refused import"
    return exc


BAD_CASES = [
    # (id, transform, message pieces, data row (its file line is row + 1: the header is line 1), column)
    ("unknown-column", lambda t: rename_column(t, "steps", "stpes"), ["unknown column", "did you mean 'steps'"], None, "stpes"),
    ("unknown-loss-column", lambda t: rename_column(t, "loss_books", "los_books"),
     ["unknown column", "did you mean 'loss_books'"], None, "los_books"),
    ("missing-model-params", lambda t: drop_column(t, "model_params"), ["missing column 'model_params'"], None, None),
    ("missing-run-id", lambda t: drop_column(t, "run_id"), ["missing column 'run_id'"], None, None),
    ("missing-steps-and-tokens", lambda t: drop_column(drop_column(t, "steps"), "tokens"),
     ["missing column 'steps' or 'tokens'"], None, None),
    ("negative-weight", lambda t: edit(edit(t, 2, "w_web", "-0.1"), 2, "w_code", "0.9"), ["-0.1", ">= 0"], 2, "w_web"),
    ("weights-sum", lambda t: edit(edit(edit(t, 4, "w_code", "0.7"), 5, "w_code", "0.7"), 5, "w_code", "0.7"),
     ["sum to 1.1", "off 1 by +0.1"], 4, "w_web"),
    ("weights-differ-in-run", lambda t: edit(edit(t, 2, "w_web", "0.49"), 2, "w_code", "0.31"),
     ["run 'a'", "0.49", "0.5 at line 2", "one mixture"], 2, "w_web"),
    ("nan-loss", lambda t: edit(t, 3, "loss_code", "nan"), ["missing (empty or NaN)"], 3, "loss_code"),
    ("empty-loss", lambda t: edit(t, 7, "loss_web", ""), ["missing (empty or NaN)"], 7, "loss_web"),
    ("inf-loss", lambda t: edit(t, 6, "loss_books", "inf"), ["inf (not finite)"], 6, "loss_books"),
    ("duplicate-steps", lambda t: edit(edit(t, 5, "steps", "100"), 5, "tokens", "65536"),
     ["run 'b'", "two checkpoints at steps = 100", "lines 5 and 6"], 5, "steps"),
    ("non-numeric", lambda t: edit(t, 6, "loss_books", "abc"), ["'abc' is not a number"], 6, "loss_books"),
    ("non-numeric-steps", lambda t: edit(t, 8, "steps", "4OO"), ["'4OO' is not a number"], 8, "steps"),
    ("model-params-fraction", lambda t: edit(t, 1, "model_params", "1000000.5"),
     ["positive integer", "1e+06"], 1, "model_params"),
    ("model-params-zero", lambda t: edit(t, 6, "model_params", "0"), ["positive integer"], 6, "model_params"),
    ("model-params-differ", lambda t: edit(t, 2, "model_params", "2000000"),
     ["run 'a'", "2000000", "1000000 at line 2"], 2, "model_params"),
    ("empty-file", lambda t: "", ["the file is empty"], None, None),
    ("header-only", lambda t: t.split("\n")[0] + "\n", ["no data rows"], None, None),
    ("repeated-column", lambda t: rename_column(t, "w_books", "w_web"), ["appears twice"], None, "w_web"),
    ("empty-run-id", lambda t: edit(t, 3, "run_id", ""), ["run_id is empty"], 3, "run_id"),
    ("negative-cost", lambda t: edit(t, 3, "cost", "-5"), ["cost -5 < 0"], 3, "cost"),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_refused_and_db_unchanged(case, good: str, db_with_study: Path, tmp_path: Path) -> None:
    name, transform, pieces, row, column = case
    bad = tmp_path / f"{name}.csv"
    bad.write_text(transform(good))
    # into the existing study (domains checked against it) through the CLI ...
    exc = assert_refused(db_with_study, bad, str(bad), *pieces, study="s1")
    # ... and as a new study's table, without a database
    with pytest.raises(ValidationError) as ei:
        read_run_table(bad)
    assert str(ei.value) == str(exc)
    assert exc.file == str(bad)
    assert exc.row is None  # a CSV error names the file's line, not a data row
    assert exc.line == (None if row is None else row + 1)
    if column is not None:
        assert exc.column == column
        assert f"column '{column}'" in str(exc)
    if row is not None:
        assert f"line {row + 1}" in str(exc) and not re.search(r"rows? \d", str(exc))


def test_small_deviation_is_renormalised_and_counted(good: str, tmp_db: Path, tmp_path: Path) -> None:
    text = edit(edit(good, 6, "w_web", "0.33"), 7, "w_web", "0.33")  # run c: rows 6, 7 differ -> error
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(ValidationError, match="one mixture"):
        read_run_table(p)
    text = good
    for r in (6, 7, 8, 9):
        text = edit(text, r, "w_web", "0.33")  # sum 0.996, off by -0.004
    p.write_text(text)
    df, notes = read_run_table(p)
    assert notes.renormalised_rows == 4
    assert notes.max_sum_deviation == pytest.approx(0.004)
    np.testing.assert_allclose(df[["w_web", "w_code", "w_books"]].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    r = cli("import", p, "--study", "x", "--db", tmp_db, "--json")
    assert r.exit_code == 0, r.output
    assert '"renormalised_rows": 4' in r.output
    r = cli("import", p, "--study", "y", "--db", tmp_db)
    assert "renormalised the weights of 4 row(s)" in r.output


def test_too_large_deviation(good: str, tmp_path: Path, db_with_study: Path) -> None:
    text = good
    for r in (6, 7, 8, 9):
        text = edit(text, r, "w_web", "0.32")  # off by -0.014
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(ValidationError) as ei:
        read_run_table(p)
    assert "off 1 by -0.014" in str(ei.value) and ei.value.line == 7
    exc = assert_refused(db_with_study, p, "off 1 by -0.014", "more than the 0.01 that is renormalised", study="new")
    assert exc.line == 7


def test_domains_disagree_with_study(good: str, db_with_study: Path, tmp_path: Path) -> None:
    p = tmp_path / "math.csv"
    p.write_text(rename_column(rename_column(good, "w_books", "w_math"), "run_id", "run_id"))
    exc = assert_refused(db_with_study, p, "disagree with the study", "lacks w_books", "has w_math", "['web', 'code', 'books']")
    assert exc.column == "w_math"


def test_eval_domains_disagree_with_study(good: str, db_with_study: Path, tmp_path: Path) -> None:
    text = rename_column(good, "loss_books", "loss_math")
    text = "\n".join(ln.replace("a,", "z,", 1) if ln.startswith("a,") else ln for ln in text.split("\n"))
    p = tmp_path / "evals.csv"
    p.write_text(text.replace("\nb,", "\nbb,").replace("\nc,", "\ncc,"))
    assert_refused(db_with_study, p, "loss columns", "disagree")


def test_run_id_clash_with_existing_study(db_with_study: Path, data_dir: Path) -> None:
    exc = assert_refused(db_with_study, data_dir / "runs_checkpoints.csv", "run 'a' already exists", "line 2")
    assert (exc.line, exc.column) == (2, "run_id")


def test_missing_file_and_failed_new_db(tmp_db: Path, tmp_path: Path) -> None:
    r = cli("import", tmp_path / "nope.csv", "--study", "s", "--db", tmp_db)
    assert isinstance(r.exception, ValidationError) and "file not found" in str(r.exception)
    assert not tmp_db.exists()


def test_failed_import_into_a_new_database_leaves_no_file(data_dir: Path, tmp_path: Path) -> None:
    """A bad study name is refused before anything is read or written (blaming --study), and an
    import that fails inside the store, after the new database was built, leaves no database,
    no hidden build file and no lock files."""
    db = tmp_path / "new" / "runs.duckdb"
    r = cli("import", data_dir / "runs_checkpoints.csv", "--study", "bad name", "--db", db)
    assert r.exit_code != 0 and "--study 'bad name' is not a usable study name" in str(r.exception)
    assert not db.parent.exists() or list(db.parent.iterdir()) == []
    table, _ = read_run_table(data_dir / "runs_checkpoints.csv")

    def fails_in_the_store(store: Store) -> None:
        store.import_runs("good", table)
        store.import_runs("good", table)  # the same run ids again: refused inside the store

    with pytest.raises(ValidationError, match="already exists in study 'good'"):
        Store.create_with(db, fails_in_the_store)
    assert list(db.parent.iterdir()) == []
    r = cli("import", data_dir / "runs_checkpoints.csv", "--study", "good", "--db", db)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in db.parent.iterdir() if not p.name.endswith((".lock", ".gate"))) == ["runs.duckdb"]
    assert Store(db).study_names() == ["good"]


def _other_process_creates(db: Path, data_dir: Path) -> None:
    """Another mixplan process makes a database at ``db`` and imports into it."""
    r = subprocess.run([sys.executable, "-m", "engine.cli", "import", str(data_dir / "runs_checkpoints.csv"),
                        "--study", "theirs", "--db", str(db)], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0, r.stderr


def test_a_failed_import_never_deletes_a_database_another_process_created(data_dir: Path, tmp_path: Path) -> None:
    """An import into a new file that fails after another process created that file (and wrote
    to it) leaves that process's database as it is; one that succeeds meanwhile writes nothing
    and says to run again."""
    db = tmp_path / "runs.duckdb"
    table, _ = read_run_table(data_dir / "runs_checkpoints.csv")

    def fails_after_the_other_process(store: Store) -> None:
        store.import_runs("mine", table)
        _other_process_creates(db, data_dir)
        raise ValidationError("this import fails")

    with pytest.raises(ValidationError, match="this import fails"):
        Store.create_with(db, fails_after_the_other_process)
    before = dump(db)
    assert Store(db).study_names() == ["theirs"]

    db2 = tmp_path / "runs2.duckdb"

    def succeeds_after_the_other_process(store: Store) -> None:
        store.import_runs("mine", table)
        _other_process_creates(db2, data_dir)

    with pytest.raises(MixplanError, match="another process created the database .* nothing was written"):
        Store.create_with(db2, succeeds_after_the_other_process)
    assert Store(db2).study_names() == ["theirs"]
    assert dump(db) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no hidden build file stays


def test_parquet_in_and_bad_parquet(data_dir: Path, tmp_path: Path, db_with_study: Path) -> None:
    df, _ = read_run_table(data_dir / "runs_checkpoints.csv")
    pq = write_run_table(df, tmp_path / "runs.parquet")
    back, notes = read_run_table(pq)
    assert notes.format == "parquet"
    pd.testing.assert_frame_equal(back, df)
    # Parquet detected by its magic bytes even under another suffix
    odd = tmp_path / "runs.data"
    shutil.copy(pq, odd)
    assert read_run_table(odd)[1].format == "parquet"
    bad = df.copy()
    bad.loc[4, "loss_web"] = np.nan
    write_run_table(bad, tmp_path / "bad.parquet")
    assert_refused(db_with_study, tmp_path / "bad.parquet", "row 5", "column 'loss_web'", "missing (empty or NaN)")
    bad = df.copy()
    bad["loss_web"] = bad["loss_web"].astype(str)
    bad.loc[2, "loss_web"] = "oops"
    write_run_table(bad, tmp_path / "bad2.parquet")
    assert_refused(db_with_study, tmp_path / "bad2.parquet", "row 3", "'oops' is not a number")


def test_duplicate_tokens_without_steps(good: str, tmp_path: Path, db_with_study: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text(edit(drop_column(good, "steps"), 2, "tokens", "65536"))
    with pytest.raises(ValidationError) as ei:
        read_run_table(p)
    assert "two checkpoints at tokens = 65536" in str(ei.value) and ei.value.line == 3
    exc = assert_refused(db_with_study, p, "two checkpoints at tokens = 65536", "lines 2 and 3")
    assert (exc.line, exc.column) == (3, "tokens")


# ---- RegMix ------------------------------------------------------------------------------
def test_regmix_pair_reads_with_inferred_size(regmix_dir: Path) -> None:
    df, notes = read_run_table([regmix_dir / "train_pile_loss_1m.csv", regmix_dir / "train_mixture_1m.csv"])
    assert notes.format == "regmix" and notes.runs == 512 and notes.checkpoints == 512
    assert notes.inferred == {"model_params": 1e6, "tokens": 1e9}
    assert 0 < notes.renormalised_rows < 512  # published weights sum to 0.996-1.004
    assert len([c for c in df.columns if c.startswith("w_")]) == 17
    assert "loss_pile_cc" in df.columns and "w_pile_cc" in df.columns
    _, n1b = read_run_table([regmix_dir / "test_mixture_1B.csv", regmix_dir / "test_pile_loss_1B.csv"])
    assert n1b.inferred == {"model_params": 1e9, "tokens": 25e9}
    df60, _ = read_run_table([regmix_dir / "test_mixture_60m.csv", regmix_dir / "test_pile_loss_60m.csv"],
                             model_params=123, tokens=5e8)
    assert set(df60["model_params"]) == {123} and set(df60["tokens"]) == {5e8}


@pytest.fixture(params=["sample", "real"])
def regmix_folder(request: pytest.FixtureRequest, data_dir: Path) -> Path:
    """The made-up sample in tests/data/regmix, and RegMix's own tables where ../shared has them."""
    return data_dir / "regmix" if request.param == "sample" else request.getfixturevalue("regmix_dir")


def test_regmix_errors(regmix_folder: Path, tmp_path: Path, db_with_study: Path) -> None:
    mix, loss = regmix_folder / "train_mixture_1m.csv", regmix_folder / "train_pile_loss_1m.csv"
    study = f"rm-{regmix_folder.parent.name}"
    assert_refused(db_with_study, mix, "RegMix mixture file", "needs its loss file")
    # a bad weight names the mixture file, its row and its own column
    lines = mix.read_text().split("\n")
    cells = lines[3].split(",")
    cells[1] = "x1"
    lines[3] = ",".join(cells)
    bad_mix = tmp_path / "train_mixture_1m.csv"
    bad_mix.write_text("\n".join(lines))
    exc = assert_refused(db_with_study, bad_mix, "'x1' is not a number", study=study, extra=(str(loss),))
    assert exc.file == str(bad_mix) and exc.line == 4 and exc.column == "train_the_pile_arxiv" and "'x1'" in str(exc)
    # a loss row without a mixture
    lines = loss.read_text().split("\n")
    lines[5] = "9999," + lines[5].split(",", 1)[1]
    bad_loss = tmp_path / "train_pile_loss_1m.csv"
    bad_loss.write_text("\n".join(lines))
    exc = assert_refused(db_with_study, bad_loss, "index 9999 has losses but no mixture", study=study,
                         extra=(str(mix),))
    assert exc.line == 6 and exc.column == "index"
    # a file name without a size and no --model-params
    plain_mix, plain_loss = tmp_path / "mix.csv", tmp_path / "loss.csv"
    shutil.copy(mix, plain_mix)
    shutil.copy(loss, plain_loss)
    assert_refused(db_with_study, plain_mix, "cannot tell", study=study, extra=(str(plain_loss),))
    r = cli("import", plain_mix, plain_loss, "--model-params", "1000000", "--study", study, "--db", db_with_study)
    assert r.exit_code == 0, r.output
    assert Store(db_with_study).runs_frame(study)["run_id"].iloc[0] == "1m-1"  # no split in the name: size only


REGMIX_PAIRS = [("train_mixture_1m.csv", "train_pile_loss_1m.csv"), ("test_mixture_60m.csv", "test_pile_loss_60m.csv"),
                ("test_mixture_1B.csv", "test_pile_loss_1B.csv")]


def _import_sizes(folder: Path, db: Path, study: str) -> None:
    for mix, loss in REGMIX_PAIRS:
        r = cli("import", folder / mix, folder / loss, "--study", study, "--db", db)
        assert r.exit_code == 0, r.output


def test_regmix_sizes_share_a_study(data_dir: Path, tmp_db: Path, tmp_path: Path) -> None:
    """The made-up sample in RegMix's layout (tests/data/regmix): every file numbers its runs from
    0 or 1, and the default prefix <split>-<size>- keeps the three sizes apart in one study."""
    folder = data_dir / "regmix"
    _import_sizes(folder, tmp_db, "pile")
    runs = Store(tmp_db).runs_frame("pile")
    assert list(runs["run_id"]) == ([f"train-1m-{i}" for i in range(1, 6)] + [f"test-60m-{i}" for i in range(1, 4)]
                                    + [f"test-1b-{i}" for i in range(3)])
    assert runs.groupby("model_params")["run_id"].count().to_dict() == {10**6: 5, 6 * 10**7: 3, 10**9: 3}
    assert set(runs.loc[runs["model_params"] == 10**9, "tokens"]) == {25e9}
    assert [c for c in runs.columns if c.startswith("loss_")] == ["loss_arxiv", "loss_github", "loss_pile_cc"]
    # the same pair again clashes, and the error points at the loss file's index and says how to fix it
    exc = assert_refused(tmp_db, folder / "train_mixture_1m.csv", "run 'train-1m-1' already exists",
                         "5 run id(s) clash", "--run-prefix", study="pile",
                         extra=(str(folder / "train_pile_loss_1m.csv"),))
    assert (exc.file, exc.line, exc.column) == (str(folder / "train_pile_loss_1m.csv"), 2, "index")
    # ... and goes in under a prefix of one's own; '' gives RegMix's bare index
    r = cli("import", folder / "train_mixture_1m.csv", folder / "train_pile_loss_1m.csv", "--run-prefix", "again-1m-",
            "--study", "pile", "--db", tmp_db, "--json")
    assert r.exit_code == 0, r.output
    assert "run ids are 'again-1m-<index>'" in r.output
    df, notes = read_run_table([folder / "test_mixture_1B.csv", folder / "test_pile_loss_1B.csv"], run_prefix="")
    assert list(df["run_id"]) == ["0", "1", "2"] and notes.run_prefix == ""


def test_regmix_sizes_share_a_study_real_tables(regmix_dir: Path, tmp_db: Path) -> None:
    _import_sizes(regmix_dir, tmp_db, "pile")
    # a size's train and test files do not clash either
    r = cli("import", regmix_dir / "test_mixture_1m.csv", regmix_dir / "test_pile_loss_1m.csv", "--study", "pile",
            "--db", tmp_db)
    assert r.exit_code == 0, r.output
    runs = Store(tmp_db).runs_frame("pile")
    prefixes = runs["run_id"].str.rsplit("-", n=1).str[0].value_counts().to_dict()
    assert prefixes == {"train-1m": 512, "test-1m": 256, "test-60m": 256, "test-1b": len(runs) - 1024}
    assert runs["run_id"].is_unique


def test_run_prefix_on_a_run_table(data_dir: Path, tmp_db: Path, tmp_path: Path) -> None:
    src = data_dir / "runs_checkpoints.csv"
    assert cli("import", src, "--study", "s", "--db", tmp_db).exit_code == 0
    r = cli("import", src, "--run-prefix", "rerun-", "--study", "s", "--db", tmp_db)
    assert r.exit_code == 0, r.output
    ids = Store(tmp_db).runs_frame("s").drop_duplicates("run_id")["run_id"].tolist()
    assert ids == ["a", "b", "c", "rerun-a", "rerun-b", "rerun-c"]
    for bad in (" x-", "x-\t"):
        exc = assert_refused(tmp_db, src, "--run-prefix", "white space", study="s", extra=("--run-prefix", bad))
        assert exc.fix


# ---- round trips ---------------------------------------------------------------------------
def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["run_id"] = out["run_id"].astype(str)
    for c in out.columns:
        if c != "run_id":
            out[c] = out[c].astype("float64")
    keys = ["run_id"] + [c for c in ("steps", "tokens") if c in out.columns]
    return out.sort_values(keys).reset_index(drop=True)[sorted(out.columns)]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_checkpoints(data_dir: Path, tmp_db: Path, tmp_path: Path, suffix: str) -> None:
    src = data_dir / "runs_checkpoints.csv"
    original, _ = read_run_table(src)
    assert cli("import", src, "--study", "one", "--db", tmp_db).exit_code == 0
    out1 = tmp_path / f"one{suffix}"
    r = cli("export-runs", "--study", "one", "--out", out1, "--db", tmp_db)
    assert r.exit_code == 0, r.output
    r = cli("import", out1, "--study", "two", "--db", tmp_db, "--json")
    assert r.exit_code == 0, r.output
    out2 = tmp_path / f"two{suffix}"
    assert cli("export-runs", "--study", "two", "--out", out2, "--db", tmp_db).exit_code == 0
    e1, e2 = read_run_table(out1)[0], read_run_table(out2)[0]
    # bit for bit: a re-import must not move the last bits of weights that already sum to 1
    pd.testing.assert_frame_equal(_sorted(e1), _sorted(e2), check_exact=True)
    pd.testing.assert_frame_equal(_sorted(e1), _sorted(original), check_exact=True)
    # the metric cell left empty stays empty
    assert e1["metric_acc"].isna().sum() == 1


def test_round_trip_regmix(regmix_dir: Path, tmp_db: Path, tmp_path: Path) -> None:
    mix, loss = regmix_dir / "train_mixture_1m.csv", regmix_dir / "train_pile_loss_1m.csv"
    original, notes = read_run_table([mix, loss])
    r = cli("import", mix, loss, "--study", "regmix-1m", "--db", tmp_db)
    assert r.exit_code == 0, r.output
    assert "imported 512 run(s), 512 checkpoint(s)" in r.output
    assert f"renormalised the weights of {notes.renormalised_rows} row(s)" in r.output
    out1 = tmp_path / "regmix.csv"
    assert cli("export-runs", "--study", "regmix-1m", "--out", out1, "--db", tmp_db).exit_code == 0
    r = cli("import", out1, "--study", "regmix-copy", "--db", tmp_db, "--json")
    assert r.exit_code == 0, r.output
    assert '"renormalised_rows": 0' in r.output
    out2 = tmp_path / "regmix2.csv"
    assert cli("export-runs", "--study", "regmix-copy", "--out", out2, "--db", tmp_db).exit_code == 0
    e1, e2 = read_run_table(out1)[0], read_run_table(out2)[0]
    pd.testing.assert_frame_equal(_sorted(e1), _sorted(e2), check_exact=True)
    pd.testing.assert_frame_equal(_sorted(e1), _sorted(original), check_exact=True)
    studies = {s.name: s for s in Store(tmp_db).list_studies()}
    assert studies["regmix-1m"].runs == studies["regmix-copy"].runs == 512


def test_rows_summing_to_one_within_float_noise_are_kept_bit_for_bit(tmp_path: Path) -> None:
    # 0.6 + 0.3 + 0.1 is 1 - 1.1e-16 in floats: dividing by that sum would change every weight's last bits
    w = [0.6, 0.3, 0.1]
    assert np.sum(w) != 1.0
    p = tmp_path / "t.csv"
    p.write_text("run_id,model_params,steps,w_a,w_b,w_c,loss_a\n"
                 f"r,1000,10,{w[0]!r},{w[1]!r},{w[2]!r},2.5\n"
                 "s,1000,10,0.3,0.3,0.3990,2.6\n")  # off by 1e-3: rescaled
    df, notes = read_run_table(p)
    assert df.loc[0, ["w_a", "w_b", "w_c"]].tolist() == w
    assert notes.renormalised_rows == 1
    assert df.loc[1, ["w_a", "w_b", "w_c"]].sum() == pytest.approx(1.0, abs=1e-15)
    # and the rescaled row, written out and read again, stays as it is
    again, notes2 = read_run_table(write_run_table(df, tmp_path / "again.csv"))
    pd.testing.assert_frame_equal(again, df, check_exact=True)
    assert notes2.renormalised_rows == 0


def test_csv_errors_name_the_physical_line(good: str, tmp_path: Path) -> None:
    """Blank lines (which pandas skips) and a quoted cell spanning two lines still give the line an
    editor shows; a Parquet file, which has no lines, gives the data row."""
    lines = good.strip().split("\n")
    # line 1 header, 2-3 data (run a), 4 blank, 5 data (a), 6 whitespace only, 7 data (b), 8-9 one row
    # with a quoted line break in its run_id, 10 data with a bad loss cell
    text = "\n".join(lines[:3] + [""] + [lines[3]] + ["   "] + [lines[4]]
                     + ['"multi\nline"' + lines[5][1:]] + [edit(good, 7, "loss_code", "abc").strip().split("\n")[7]])
    p = tmp_path / "blank.csv"
    p.write_text(text + "\n")
    assert p.read_text().split("\n")[9].split(",")[8] == "abc"  # the bad cell is on line 10
    with pytest.raises(ValidationError) as ei:
        read_run_table(p)
    assert (ei.value.line, ei.value.row, ei.value.column) == (10, None, "loss_code")
    assert f"{p}, line 10, column 'loss_code': 'abc' is not a number" in str(ei.value)
    # a check that points at two rows names both lines
    p.write_text(text.replace(",abc,", ",2.0,").replace("\na,1000000,262144,400", "\na,1000000,262144,100") + "\n")
    with pytest.raises(ValidationError, match=r"line 5, column 'steps': run 'a' has two checkpoints at steps = 100 "
                                               r"\(lines 2 and 5\)"):
        read_run_table(p)
    (tmp_path / "ok.csv").write_text(good)
    bad, _ = read_run_table(tmp_path / "ok.csv")
    bad.loc[6, "loss_code"] = np.inf
    with pytest.raises(ValidationError) as ei:
        read_run_table(write_run_table(bad, tmp_path / "bad.parquet"))
    assert (ei.value.row, ei.value.line) == (7, None) and "row 7, column 'loss_code'" in str(ei.value)


def test_round_trip_regmix_sample(data_dir: Path, tmp_db: Path, tmp_path: Path) -> None:
    """The vendored RegMix-layout sample: import, export, re-import into a new study: rows identical."""
    folder = data_dir / "regmix"
    _import_sizes(folder, tmp_db, "pile")
    original = pd.concat([read_run_table([folder / m, folder / loss])[0] for m, loss in REGMIX_PAIRS])
    out1 = tmp_path / "pile.csv"
    assert cli("export-runs", "--study", "pile", "--out", out1, "--db", tmp_db).exit_code == 0
    r = cli("import", out1, "--study", "copy", "--db", tmp_db, "--json")
    assert r.exit_code == 0, r.output
    assert '"renormalised_rows": 0' in r.output
    out2 = tmp_path / "copy.csv"
    assert cli("export-runs", "--study", "copy", "--out", out2, "--db", tmp_db).exit_code == 0
    e1, e2 = read_run_table(out1)[0], read_run_table(out2)[0]
    pd.testing.assert_frame_equal(_sorted(e1), _sorted(e2), check_exact=True)
    pd.testing.assert_frame_equal(_sorted(e1), _sorted(original), check_exact=True)


def test_export_drops_all_empty_loss_and_metric_columns(data_dir: Path, tmp_db: Path, tmp_path: Path) -> None:
    """A config can name an evaluation domain no run measured; its column, empty on every row,
    is left out of the export, which then imports again (an empty loss column is refused)."""
    cfg = tmp_path / "s.toml"
    cfg.write_text('name = "s"\ndomains = ["web", "code", "books"]\neval_domains = ["web", "code", "books", "math"]\n')
    text = (data_dir / "runs_checkpoints.csv").read_text()
    src = tmp_path / "runs.csv"
    src.write_text("\n".join(ln.rsplit(",", 2)[0] + ",," + ln.rsplit(",", 1)[1] if i else ln
                             for i, ln in enumerate(text.strip().split("\n"))) + "\n")  # metric_acc all empty
    assert read_run_table(src)[0]["metric_acc"].isna().all()
    r = cli("import", src, "--study", "s", "--config", cfg, "--db", tmp_db)
    assert r.exit_code == 0, r.output
    assert "loss_math" in Store(tmp_db).runs_frame("s").columns  # registered, never measured
    out = tmp_path / "s.csv"
    assert cli("export-runs", "--study", "s", "--out", out, "--db", tmp_db).exit_code == 0
    header = out.read_text().split("\n")[0].split(",")
    assert "loss_math" not in header and "metric_acc" not in header
    assert {"loss_web", "loss_code", "loss_books", "cost"} <= set(header)
    r = cli("import", out, "--study", "copy", "--db", tmp_db)
    assert r.exit_code == 0, r.output
