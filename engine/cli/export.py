"""`mixplan export`: the chosen mixture in the formats trainers read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.cli.common import DEFAULT_DB, DbOption, StudyOption, console_err, esc, open_store
from engine.errors import ValidationError


def export(
    study: StudyOption,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json, yaml, megatron, olmo or hf.")] = "json",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists (never the database).")] = False,
    model: Annotated[str, typer.Option("--model", "-m", help="auto (default: the study's recommended model and "
                                       "mixture, as `mixplan optimum` gives it) or a loss model whose optimum at the "
                                       "target to export.")] = "auto",
    trial: Annotated[Optional[int], typer.Option("--trial", help="Export this trial's mixture instead.")] = None,
    run: Annotated[Optional[str], typer.Option("--run", help="Export this run's mixture instead (run_id).")] = None,
    prefix: Annotated[Optional[str], typer.Option(
        "--prefix", help="Data path per domain for megatron/olmo/hf, {domain} replaced (e.g. "
                         "'data/{domain}_text_document'); without it those formats carry <path-to-DOMAIN> "
                         "placeholders to fill.")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Export the mixture to train with at the study's target scale, with its provenance (study,
    model, predicted loss and std, the runs it rests on). Default: the model's predicted optimum at
    the target; --trial/--run export a chosen run's mixture. Logged as an `export` event. An
    existing --out file is kept unless --force; the database itself is never overwritten."""
    from engine.export import FORMATS, from_optimum, from_run, log_export, render
    from engine.outfile import check_out_path, database_files, write_out_file

    if fmt not in FORMATS:
        raise ValidationError(f"unknown format '{fmt}'.", fix=f"use one of {', '.join(FORMATS)}.")
    if trial is not None and run is not None:
        raise ValidationError("give --trial or --run, not both.")
    if out is not None:  # before any fit: a bad --out costs nothing
        check_out_path(out, overwrite=force, protect=database_files(db), example="mixture.json")
    store = open_store(db)
    if trial is not None or run is not None:
        ex = from_run(store, study, run_id=run, trial_id=trial)
    else:
        ex = from_optimum(store, study, model)
    text = render(ex, fmt, prefix_template=prefix)
    if out is not None:
        write_out_file(out, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=force,
                       protect=database_files(db), example="mixture.json")
        console_err.print(f"wrote {fmt} export of study {esc(study)} to {esc(out)}")
    else:
        typer.echo(text, nl=False)
    if not prefix and fmt in ("megatron", "olmo", "hf"):
        console_err.print("note: no --prefix, so the data paths are <path-to-DOMAIN> placeholders to fill (e.g. "
                          "--prefix 'data/{domain}_text_document').", markup=False, highlight=False)
    log_export(store, ex, fmt, actor="cli", out=None if out is None else str(out))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
