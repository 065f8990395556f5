"""Options and output helpers shared by the CLI modules."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
console_err = Console(stderr=True)

DbOption = Annotated[Path, typer.Option("--db", help="The mixplan database (DuckDB file).", envvar="MIXPLAN_DB")]
StudyOption = Annotated[str, typer.Option("--study", "-s", help="Study name (see `mixplan study list`).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
DEFAULT_DB = Path("runs.duckdb")


def print_json(obj: Any) -> None:
    """Print JSON to stdout (plain, no colour codes, so scripts can parse it)."""
    typer.echo(json.dumps(obj, indent=2, default=_default))


def _default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "value"):
        return o.value
    return str(o)


def whole_number(value: float | None, option: str) -> int | None:
    """A ``--model-params``-like option (typed float so that 1e9 is accepted) as a positive int.

    inf and nan are refused before ``int()``, which would raise OverflowError / ValueError
    as a traceback."""
    if value is None:
        return None
    if not math.isfinite(value) or value != int(value) or value <= 0 or value >= 2**63:
        from engine.errors import ValidationError

        raise ValidationError(f"{option} must be a positive whole number, got {value:g}.",
                              fix=f"e.g. {option} 60000000 (or 6e7).")
    return int(value)


def open_store(db: Path, *, create: bool = False):
    """Open the store; a missing file is an error unless the command creates things."""
    from engine.store import Store

    return Store(db, create=create)
