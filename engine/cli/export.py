"""`mixplan export`: the chosen mixture in the formats trainers read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.cli.common import DEFAULT_DB, DbOption, StudyOption, console_err, open_store
from engine.errors import ValidationError


def export(
    study: StudyOption,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json, yaml, megatron, olmo or hf.")] = "json",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="auto (default: the study's recommended model and "
                                       "mixture, as `mixplan optimum` gives it) or a loss model whose optimum at the "
                                       "target to export.")] = "auto",
    trial: Annotated[Optional[int], typer.Option("--trial", help="Export this trial's mixture instead.")] = None,
    run: Annotated[Optional[str], typer.Option("--run", help="Export this run's mixture instead (run_id).")] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Data path per domain for megatron/olmo/hf; {domain} is replaced.")] = "{domain}",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Export the mixture to train with at the study's target scale, with its provenance (study,
    model, predicted loss and std, the runs it rests on). Default: the model's predicted optimum at
    the target; --trial/--run export a chosen run's mixture. Logged as an `export` event."""
    from engine.export import FORMATS, from_optimum, from_run, log_export, render

    if fmt not in FORMATS:
        raise ValidationError(f"unknown format '{fmt}'.", fix=f"use one of {', '.join(FORMATS)}.")
    if trial is not None and run is not None:
        raise ValidationError("give --trial or --run, not both.")
    store = open_store(db)
    if trial is not None or run is not None:
        ex = from_run(store, study, run_id=run, trial_id=trial)
    else:
        ex = from_optimum(store, study, model)
    text = render(ex, fmt, prefix_template=prefix)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        console_err.print(f"wrote {fmt} export of study {study} to {out}")
    else:
        typer.echo(text, nl=False)
    log_export(store, ex, fmt, actor="cli", out=None if out is None else str(out))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
