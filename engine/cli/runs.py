"""`mixplan import` and `mixplan export-runs`: run tables in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.cli.common import DEFAULT_DB, DbOption, StudyOption
from engine.errors import NotAvailableError


def import_(
    files: Annotated[list[Path], typer.Argument(help="A run table (CSV/Parquet), or a RegMix mixture + loss pair.")],
    study: StudyOption,
    config: Annotated[Optional[Path], typer.Option("--config", help="Study config for a new study.")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Import a run table into a study (created if new). All-or-nothing."""
    raise NotAvailableError("`mixplan import` is not available yet (foundation issue).")


def export_runs(study: StudyOption, out: Annotated[Path, typer.Option("--out", help="CSV or Parquet file.")],
                db: DbOption = DEFAULT_DB) -> None:
    """Write a study's runs as a run table (one row per checkpoint)."""
    raise NotAvailableError("`mixplan export-runs` is not available yet (foundation issue).")


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("export-runs")(export_runs)
