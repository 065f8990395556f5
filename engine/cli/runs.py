"""`mixplan import` and `mixplan export-runs`: run tables in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.cli.common import (DEFAULT_DB, DbOption, JsonFlag, StudyOption, console, esc, print_json,
                               whole_number)


def import_(
    files: Annotated[list[Path], typer.Argument(
        help="A run table (CSV/Parquet: run_id, model_params, tokens/steps, w_<domain>, loss_<domain>, ...), "
             "or a RegMix pair: mixture file (index, train_the_pile_<domain>...) and loss file "
             "(index, metric/the_pile_<domain>_val_loss...), in either order.")],
    study: StudyOption,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="Study config (TOML) for a new study; default: one made from the table's columns.")] = None,
    model_params: Annotated[Optional[float], typer.Option(
        "--model-params", help="Model size of a RegMix pair (default: from the file name, _1m/_60m/_1B).")] = None,
    tokens: Annotated[Optional[float], typer.Option(
        "--tokens", help="Training tokens of a RegMix pair (default: 1e9; 25e9 for 1B models).")] = None,
    run_prefix: Annotated[Optional[str], typer.Option(
        "--run-prefix", help="Put this in front of every run id, so tables that number their runs alike can share "
                             "a study. Default: none for a run table; '<split>-<size>-' for a RegMix pair "
                             "(train-1m-1, test-60m-1, test-1b-0); '' keeps RegMix's bare index.")] = None,
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """Import a run table into a study (created if new). Everything is validated first; on any
    error nothing is written. Weights off 1 by at most 0.01 (rounded tables) are renormalised
    and counted."""
    from engine.config import load_config
    from engine.runtable import read_run_table
    from engine.runtable.importer import import_domains
    from engine.store import Store

    cfg = load_config(config) if config is not None else None
    size = whole_number(model_params, "--model-params")
    existed = db.exists()
    study_domains = import_domains(Store(db, create=False) if existed else None, study, cfg, config_file=config,
                                   study_label="--study")
    table, notes = read_run_table(files, study_domains=study_domains,
                                  model_params=size, tokens=tokens,
                                  run_prefix=run_prefix)
    source = " + ".join(str(f) for f in files)

    def add(store: Store):
        return store.import_runs(study, table, source=source, config=cfg,
                                 renormalised_rows=notes.renormalised_rows, actor="cli", locate=notes.locate)

    # a new database appears only if the import succeeds (and a failure deletes nothing)
    report = add(Store(db, create=False)) if existed else Store.create_with(db, add)
    if as_json:
        print_json({"study": report.study, "created_study": report.created_study, "runs": report.runs,
                    "checkpoints": report.checkpoints, "renormalised_rows": report.renormalised_rows,
                    "max_sum_deviation": notes.max_sum_deviation, "format": notes.format,
                    "files": list(notes.files), "inferred": notes.inferred, "notes": list(notes.notes)})
        return
    verb = "created study" if report.created_study else "study"
    console.print(f"imported {report.runs} run(s), {report.checkpoints} checkpoint(s) into {verb} "
                  f"[bold]{esc(report.study)}[/] ({esc(db)})")
    if report.renormalised_rows:
        console.print(f"renormalised the weights of {report.renormalised_rows} row(s) "
                      f"(largest deviation of the sum from 1: {notes.max_sum_deviation:.3g})")
    for note in notes.notes:
        console.print(f"note: {note}")
    _next_steps(Store(db, create=False), report.study)


def _next_steps(store, study: str) -> None:
    """After an import into a study without scales or a target (every study an import
    creates): how to get to proposals and an export, with a patch made from its runs."""
    from engine.study_edit import needs_edit_message

    cfg = store.get_config(study)
    if cfg.scales and cfg.target is not None:
        return
    msg = needs_edit_message(cfg, store.latest_checkpoints(study), "Proposing runs or exporting a mixture")
    console.print(f"next: {msg}", markup=False, highlight=False)


def export_runs(
    study: StudyOption,
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet/.pq for Parquet, else CSV.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists (never the database).")] = False,
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """Write a study's runs as a run table (one row per checkpoint); `mixplan import` reads it back.
    An existing file is kept unless --force; the database itself is never overwritten."""
    from engine.outfile import check_out_path, database_files
    from engine.runtable import write_run_table
    from engine.store import Store

    protect = database_files(db)
    check_out_path(out, overwrite=force, protect=protect, example="runs.csv")  # before reading anything
    df = Store(db, create=False).export_frame(study)
    write_run_table(df, out, overwrite=force, protect=protect)
    runs = int(df["run_id"].nunique()) if len(df) else 0
    if as_json:
        print_json({"study": study, "out": str(out), "runs": runs, "checkpoints": len(df),
                    "columns": list(df.columns)})
        return
    console.print(f"wrote {runs} run(s), {len(df)} checkpoint(s) of study [bold]{esc(study)}[/] to {esc(out)}")


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("export-runs")(export_runs)
