"""`mixplan data ...`: the built-in corpus (the sub-app lives in engine.cli.data)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    try:
        from engine.cli.data import data_app
    except ImportError:  # the corpus module is optional until the training issue lands
        return
    app.add_typer(data_app, name="data")
