"""`mixplan bench ...`: benchmarks (not tests) that report speed and accuracy."""

from __future__ import annotations

import typer

bench_app = typer.Typer(help="Benchmarks: store, predict, optimize, trainer.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
