"""`mixplan app`: the Streamlit app on --db."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import DEFAULT_DB, DbOption


def app_command(
    db: DbOption = DEFAULT_DB,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (localhost unless you ask). 0.0.0.0 lets anyone on "
                                                     "the network use the app: never add --allow-commands there.")] = "127.0.0.1",
    headless: Annotated[bool, typer.Option("--headless/--browser", help="Do not open a browser tab.")] = True,
    allow_commands: Annotated[bool, typer.Option(
        "--allow-commands",
        help="Let the app create, edit and dispatch studies whose runner starts programs (runner kind "
             "\"command\"): anyone who can reach the page can then run programs as this user. Off by default; "
             "even with it, the app shows each trial's argv and asks before dispatching.")] = False,
) -> None:
    """Start the mixplan web app on the database --db.

    The app never creates, edits or dispatches a study whose runner starts programs unless
    --allow-commands is given (see engine.runners.safety)."""
    from engine.runners.safety import ALLOW_ENV

    main = Path(__file__).resolve().parents[2] / "app" / "main.py"
    if not main.exists():  # installed without the source tree: find the package
        import app as app_pkg

        main = Path(list(app_pkg.__path__)[0]) / "main.py"
    # the flag alone decides: an inherited MIXPLAN_ALLOW_COMMANDS is overwritten either way
    env = dict(os.environ, MIXPLAN_DB=str(Path(db).resolve()), **{ALLOW_ENV: "1" if allow_commands else "0"})
    argv = [sys.executable, "-m", "streamlit", "run", str(main), "--server.port", str(port),
            "--server.address", host, "--server.headless", "true" if headless else "false",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    typer.echo(f"mixplan app on http://{host}:{port}  (database {db})")
    if allow_commands:
        typer.echo("--allow-commands: the app may create and dispatch studies that start programs "
                   "([runner] kind = \"command\") as this user; each dispatch shows the argv and asks first.")
    sys.stdout.flush()
    if hasattr(os, "execve"):  # become the server, so signals (Ctrl-C, kill) reach it directly
        os.execve(sys.executable, argv, env)
    raise typer.Exit(subprocess.call(argv, env=env))  # pragma: no cover - platforms without exec


def register(app: typer.Typer) -> None:
    app.command("app")(app_command)
