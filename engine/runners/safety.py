"""Which runners start programs, and the one check a front end open to other people (the web
app) makes before it creates or edits such a study, or dispatches its trials.

A study whose ``[runner]`` starts programs (``kind = "command"``: any argv the config names)
lets whoever writes its config run anything as the user the dispatcher runs as. From the CLI
that person is the user; from the web app (``mixplan app --host 0.0.0.0``) it is anyone who
can reach the page. So the app refuses such studies unless its server was started with
``mixplan app --allow-commands``, and with that opt-in it shows the exact argv of every trial
before dispatching (:func:`command_preview`).

The rule is an allow-list: only the kinds in :data:`SAFE_KINDS` (mixplan's own trainer and the
simulators, which read files but start nothing of the user's) pass without the opt-in; a
runner kind added later is refused until it is listed here.

The opt-in travels in the environment variable :data:`ALLOW_ENV`, set by ``mixplan app`` to
``"1"`` or ``"0"`` (never inherited from the shell: the flag alone decides):

- the app allows such studies only where it is ``"1"``;
- a dispatcher (``mixplan run``) refuses them only where it is ``"0"`` -- the value the app
  hands the dispatchers it starts without the opt-in -- so the CLI keeps running the user's
  own commands, and a dispatcher started by the app re-checks what the app checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import CommandsNotAllowedError

#: Runner kinds that start no program named by the config (pass without the opt-in).
SAFE_KINDS = frozenset({"builtin", "mfms-sim", "table"})
#: "1": the server was started with --allow-commands; "0": it was not (set by `mixplan app`).
ALLOW_ENV = "MIXPLAN_ALLOW_COMMANDS"
#: What enables it, for messages.
HOW_TO_ALLOW = ("start the app with `mixplan app --allow-commands` (only where everyone who can reach "
                "the page may run programs as the server's user), or create and run the study from the "
                "command line: `mixplan study create --config FILE`, `mixplan run --study NAME`.")


def starts_programs(config_or_kind) -> bool:
    """True when the runner (a StudyConfig, a RunnerConfig or a kind) starts programs that
    its config names, i.e. is not one of :data:`SAFE_KINDS`."""
    kind = config_or_kind
    if not isinstance(kind, str):
        kind = getattr(getattr(config_or_kind, "runner", config_or_kind), "kind", None)
    return kind not in SAFE_KINDS


def commands_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether this app server was started with the opt-in (``MIXPLAN_ALLOW_COMMANDS=1``).
    Unset counts as no: a server started some other way (``streamlit run app/main.py``) is
    safe by default."""
    return (os.environ if env is None else env).get(ALLOW_ENV) == "1"


def dispatch_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether a dispatcher may run program-starting trials: yes unless the process was
    started by an app without the opt-in (``MIXPLAN_ALLOW_COMMANDS=0``)."""
    return (os.environ if env is None else env).get(ALLOW_ENV) != "0"


def check_runner_allowed(config, *, allowed: bool, action: str) -> None:
    """Raise :class:`CommandsNotAllowedError` when ``config``'s runner starts programs and
    ``allowed`` is False. ``action`` says what was refused ("create", "import into",
    "dispatch the trials of", ...). The app calls this on the server before it writes a config
    or starts a dispatcher, whatever its buttons show."""
    if allowed or not starts_programs(config):
        return
    kind = config.runner.kind
    raise CommandsNotAllowedError(
        f"study '{config.name}' has [runner] kind = \"{kind}\", which starts programs named in its config "
        f"on this server; this app was started without --allow-commands, so it does not {action} such a "
        f"study.", fix=HOW_TO_ALLOW)


@dataclass(frozen=True)
class CommandPreview:
    """What dispatching one trial of a command study will start: the argv with its
    placeholders filled (``out_dir`` ends in ``<submission>``, the folder a dispatch names
    when it hands the trial over), or why it cannot be filled."""

    trial_id: int
    run_id: str
    argv: tuple[str, ...]
    error: str = ""


#: Stands for a submission's folder name (a fresh token chosen at dispatch) in previews.
SUBMISSION = "<submission>"


def command_preview(config, trials: Sequence, runs_dir: str | os.PathLike) -> list[CommandPreview]:
    """The argv each of ``trials`` will start with (DESIGN.md contract 3), filled the way the
    command runner fills it, with ``out_dir = <runs_dir>/<run_id>/<submission>``. ``runs_dir``:
    the study's runs folder (``<db dir>/mixplan-runs/<study>``)."""
    from engine.runners.base import RunFailed
    from engine.runners.command import CommandRunner, render_argv

    if config.runner.kind != "command":
        return []
    runner = CommandRunner.from_config(config)
    out = []
    for t in trials:
        out_dir = Path(runs_dir) / t.run_id / SUBMISSION
        try:
            argv = tuple(render_argv(runner.argv, runner.placeholder_values(t, out_dir)))
            out.append(CommandPreview(int(t.trial_id), t.run_id, argv))
        except RunFailed as exc:
            out.append(CommandPreview(int(t.trial_id), t.run_id, tuple(runner.argv), exc.reason))
    return out
