"""The ``mixplan`` command (DESIGN.md contract 1).

Each command group lives in its own module with a ``register(app)`` function; modules import
heavy libraries (torch, botorch, streamlit) inside the command bodies so ``--help`` stays fast.
Errors meant for the user (:class:`engine.errors.MixplanError`) print as one clear message and
exit with status 2, never as a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

# Before anything imports torch or BLAS: an OpenMP thread that spins while the other core is
# busy made two-thread runs 10-17x slower on 2-core machines (FACTS.md). Passive waiting costs
# nothing when the machine is quiet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from engine.cli import app_cmd, backtest_cmd, bench, data_cmd, demo_cmd, export, models, propose, run, runs, study, trials
from engine.cli.common import console_err, esc
from engine.errors import MixplanError

app = typer.Typer(
    name="mixplan",
    help=(
        "Plan the data mixture of an LLM pre-training run.\n\n"
        "Typical session: `mixplan study create --config study.toml`, `mixplan import runs.csv --study S`, "
        "`mixplan propose --study S --strategy mfms-bo -n 4`, `mixplan approve --study S --all`, "
        "`mixplan run --study S`, `mixplan optimum --study S --model mfms-gp --model-params 1e9 --steps 19500 --json`, "
        "`mixplan export --study S --format megatron`. Every command takes --db PATH (default ./runs.duckdb)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.callback()
def _root(db: Annotated[Optional[Path], typer.Option(
        "--db", help="The mixplan database for the command that follows (the same as giving --db after it; "
                     "default ./runs.duckdb or $MIXPLAN_DB).", show_default=False)] = None) -> None:
    """Plan the data mixture of an LLM pre-training run."""
    # every command's own --db reads $MIXPLAN_DB as its default: `mixplan --db F cmd` sets it,
    # and an explicit `cmd --db G` still wins
    if db is not None:
        os.environ["MIXPLAN_DB"] = str(db)


def _click_exceptions() -> tuple[type[BaseException], ...]:
    """The usage-error classes of click and of the copy of click that typer vendors (typer >=
    0.25 raises its own ``typer._click`` exceptions, which are not click's)."""
    import click

    classes: list[type[BaseException]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException
    except ImportError:  # an older typer on plain click
        pass
    else:
        classes.append(VendoredClickException)
    return tuple(classes)


for module in (study, runs, models, backtest_cmd, propose, trials, run, export, bench, app_cmd, data_cmd, demo_cmd):
    module.register(app)


def main() -> None:
    """Entry point: run the CLI, turning user errors into a message and exit status 2."""
    try:
        rc = app(standalone_mode=False, prog_name="mixplan")  # also under `python -m engine.cli`
    except MixplanError as exc:
        # escaped: the message quotes the user's input (a CSV cell '[/]', a TOML table [[scales]])
        console_err.print(f"[bold red]error:[/] {esc(exc)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except BrokenPipeError:  # the reader of the output went away (`mixplan trials | head`): nothing to say
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        sys.exit(1)
    except OSError as exc:  # a path the system refuses (/proc, a directory, no permission, disk full)
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        console_err.print(f"[bold red]error:[/] cannot use{esc(where)}: {esc(exc.strerror or exc)}. "
                          "Fix: give a path you can read (input) or write (output).", highlight=False,
                          soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console_err.print("aborted")
        sys.exit(1)
    except _click_exceptions() as exc:  # usage errors: unknown option, missing argument, bad value
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
