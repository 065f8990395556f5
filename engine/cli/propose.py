"""`mixplan propose`, `mixplan autopilot`, `mixplan trajectory`."""

from __future__ import annotations

import typer

from engine.errors import NotAvailableError


def register(app: typer.Typer) -> None:
    for name, what in (("propose", "Propose the next trials with a strategy"),
                       ("autopilot", "Propose, approve and run until the budget is spent"),
                       ("trajectory", "The incumbent along cumulative cost")):
        def cmd(_name: str = name) -> None:
            raise NotAvailableError(f"`mixplan {_name}` is not available yet (strategies issue #4).")

        cmd.__doc__ = f"{what} (lands with the strategies issue)."
        app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(cmd)
