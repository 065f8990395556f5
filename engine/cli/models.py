"""`mixplan predict` and `mixplan optimum`: what the loss models say."""

from __future__ import annotations

import typer

from engine.errors import NotAvailableError


def register(app: typer.Typer) -> None:
    @app.command("predict", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def predict() -> None:
        """Predict loss (mean, std) for query rows (lands with the loss-models issue)."""
        raise NotAvailableError("`mixplan predict` is not available yet (loss-models issue #3).")

    @app.command("optimum", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def optimum() -> None:
        """The predicted best mixture at a scale (lands with the loss-models issue)."""
        raise NotAvailableError("`mixplan optimum` is not available yet (loss-models issue #3).")
