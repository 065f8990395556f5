"""`mixplan data ...`: the built-in corpus (the sub-app lives in engine.cli.data)."""

from __future__ import annotations

import typer

from engine.cli.data import data_app


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
