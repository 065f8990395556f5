"""Options and output helpers shared by the CLI modules."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# emoji=False: a ':name:' in a run id or a reason is text, not an emoji code
console = Console(emoji=False)
console_err = Console(stderr=True, emoji=False)

DbOption = Annotated[Path, typer.Option("--db", help="The mixplan database (DuckDB file).", envvar="MIXPLAN_DB")]
StudyOption = Annotated[str, typer.Option("--study", "-s", help="Study name (see `mixplan study list`).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
DEFAULT_DB = Path("runs.duckdb")


def esc(value: Any) -> str:
    """``value`` as text that rich prints literally. Every string a user gave or that derives
    from one (a run id, a CSV cell, a reason, a log tail, an error message naming a TOML table
    such as ``[[scales]]``) goes through here before it is put into a message with rich markup:
    rich would otherwise read ``[/]`` as a closing tag (MarkupError) and ``[target]`` as a
    style (the text vanishes)."""
    return escape(str(value))


class PlainTable(Table):
    """A rich table whose string cells are printed as given (never read as markup): rows of
    trials, runs and events carry user text."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().add_row(*(Text(r) if isinstance(r, str) else r for r in renderables), **kwargs)


def say(text: str, *, indent: str = "") -> None:
    """Print a sentence or two of plain text (never read as markup) wrapped to the terminal, so
    an explanation fits 80 columns instead of running off the edge."""
    import textwrap

    width = max(40, console.width) - 1
    console.print(textwrap.fill(str(text), width=width, initial_indent=indent, subsequent_indent=indent,
                                break_on_hyphens=False), markup=False, highlight=False, soft_wrap=True)


def print_json(obj: Any) -> None:
    """Print JSON to stdout (plain, no colour codes, so scripts can parse it). NaN and
    infinities become null: ``json.dumps`` would write ``NaN``, which is not JSON."""
    typer.echo(json.dumps(_finite(obj), indent=2, default=_default, allow_nan=False))


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (also numpy's) replaced by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    try:
        import numpy as np

        if isinstance(obj, np.floating):
            return float(obj) if np.isfinite(obj) else None
    except ImportError:  # pragma: no cover
        pass
    return obj


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
