"""`mixplan demo build`: (re)build the bundled demo study of real trainer runs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from engine.cli.common import DEFAULT_DB, DbOption, console, esc, print_json
from engine.demo import DemoPlan

_DEFAULT = dict(DemoPlan().sizes)

demo_app = typer.Typer(help="The bundled demo study of real built-in-trainer runs.", no_args_is_help=True)


@demo_app.command("build")
def build(
    db: DbOption = DEFAULT_DB,
    workers: Annotated[int, typer.Option("--workers", help="Runs trained at once (one CPU thread each).")] = 2,
    steps: Annotated[int, typer.Option("--steps", help="Steps per run.")] = DemoPlan().steps,
    small: Annotated[int, typer.Option("--n-0.1m", help="Mixtures at 0.1M parameters.")] = _DEFAULT[100_000],
    medium: Annotated[int, typer.Option("--n-0.5m", help="Mixtures at 0.5M parameters.")] = _DEFAULT[500_000],
    large: Annotated[int, typer.Option("--n-1m", help="Mixtures at 1M parameters.")] = _DEFAULT[1_000_000],
    corpus: Annotated[Optional[str], typer.Option("--corpus", help="Corpus directory (default: the cache).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create or resume the `demo` study: finished runs are kept, the rest are trained.

    Reproducible (fixed seed and design) and resumable (run it again after an interruption)."""
    from engine.demo import build_demo

    plan = DemoPlan(sizes=((100_000, small), (500_000, medium), (1_000_000, large)), steps=steps)
    summary = build_demo(db, plan=plan, workers=workers, corpus_dir=corpus)
    if as_json:
        print_json(summary)
    else:
        console.print(f"demo study in {esc(db)}: {esc(summary)}")


def register(app: typer.Typer) -> None:
    app.add_typer(demo_app, name="demo")
