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
    host: Annotated[str, typer.Option("--host", help="Address to listen on (localhost unless you ask).")] = "127.0.0.1",
    headless: Annotated[bool, typer.Option("--headless/--browser", help="Do not open a browser tab.")] = True,
) -> None:
    """Start the mixplan web app on the database --db."""
    main = Path(__file__).resolve().parents[2] / "app" / "main.py"
    if not main.exists():  # installed without the source tree: find the package
        import app as app_pkg

        main = Path(list(app_pkg.__path__)[0]) / "main.py"
    env = dict(os.environ, MIXPLAN_DB=str(Path(db).resolve()))
    argv = [sys.executable, "-m", "streamlit", "run", str(main), "--server.port", str(port),
            "--server.address", host, "--server.headless", "true" if headless else "false",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    typer.echo(f"mixplan app on http://{host}:{port}  (database {db})")
    sys.stdout.flush()
    if hasattr(os, "execve"):  # become the server, so signals (Ctrl-C, kill) reach it directly
        os.execve(sys.executable, argv, env)
    raise typer.Exit(subprocess.call(argv, env=env))  # pragma: no cover - platforms without exec


def register(app: typer.Typer) -> None:
    app.command("app")(app_command)
