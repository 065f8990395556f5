"""`mixplan export`: the chosen mixture in the formats trainers read."""

from __future__ import annotations

import typer

from engine.errors import NotAvailableError


def register(app: typer.Typer) -> None:
    @app.command("export", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def export() -> None:
        """Export the chosen mixture (lands with the app issue)."""
        raise NotAvailableError("`mixplan export` is not available yet (app/export issue #6).")
