"""`mixplan run`: train the approved trials."""

from __future__ import annotations

import typer

from engine.errors import NotAvailableError


def register(app: typer.Typer) -> None:
    @app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def run() -> None:
        """Run approved trials on an executor (lands with the training issue)."""
        raise NotAvailableError("`mixplan run` is not available yet (training/dispatch issue #5).")
