"""The runner interface: one trial in, checkpoints out.

A runner is what turns an approved trial (mixture, model size, steps) into measurements: the
built-in trainer, a user's command (DESIGN.md contract 3), or a simulator. Runners know
nothing of the database: they return a :class:`~engine.records.RunResult` (and may stream
checkpoints through ``on_checkpoint``); the dispatcher stores them. This keeps workers on
other machines (SLURM, Ray) free of any database connection.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from engine.records import Checkpoint, RunResult, Trial


def begin_attempt(on_checkpoint: Callable[[Checkpoint], None] | None, attempt: int) -> None:
    """Tell a checkpoint sink that attempt ``attempt`` (0-based) of the run begins. A runner
    that retries calls this before each attempt: the checkpoints earlier attempts streamed are
    then void (the dispatcher replaces them with this attempt's, so a trial never mixes
    checkpoints of two attempts). Sinks without a ``begin_attempt`` method (a plain function,
    a list's ``append``) are left alone."""
    hook = getattr(on_checkpoint, "begin_attempt", None)
    if hook is not None:
        hook(int(attempt))


class MappedSink:
    """A checkpoint sink that hands ``fn(checkpoint)`` on to ``inner``, forwarding
    :func:`begin_attempt` (for runners that adjust checkpoints, e.g. their cost unit)."""

    def __init__(self, inner: Callable[[Checkpoint], None], fn: Callable[[Checkpoint], Checkpoint]) -> None:
        self.inner, self.fn = inner, fn

    def __call__(self, checkpoint: Checkpoint) -> None:
        self.inner(self.fn(checkpoint))

    def begin_attempt(self, attempt: int) -> None:
        begin_attempt(self.inner, attempt)


class RunFailed(Exception):
    """A run that did not produce a usable result. ``log_tail`` is kept with the failed trial."""

    def __init__(self, reason: str, log_tail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail


def reason_with_log(reason: str, log_tail: str, *, max_lines: int = 8, max_chars: int = 1500) -> str:
    """The reason a failed trial is stored with: ``reason`` followed by the last lines of its
    log (mixplan's own ``=== mixplan:`` lines left out). Why in the reason: it is what
    ``mixplan run``, ``mixplan study show`` and the app show of a failure, and "exited with
    status 1" alone says nothing about why."""
    lines = [ln.rstrip() for ln in log_tail.splitlines() if ln.strip() and not ln.startswith("=== mixplan")]
    if not lines:
        return reason
    text = "\n".join("  | " + ln for ln in lines[-max_lines:])
    if len(text) > max_chars:
        text = "  | ..." + text[-max_chars:]
    return f"{reason}; its log ends with:\n{text}"


class Runner(ABC):
    """Turns one trial into a :class:`RunResult`. Subclasses must be picklable (they travel
    to Ray and SLURM workers) and must raise :class:`RunFailed` for a run that failed."""

    kind: ClassVar[str]

    @abstractmethod
    def run(
        self,
        trial: Trial,
        out_dir: Path,
        *,
        cancel: threading.Event | None = None,
        on_checkpoint: Callable[[Checkpoint], None] | None = None,
    ) -> RunResult:
        """Run ``trial``, writing any files under ``out_dir``. Checkpoints may be streamed to
        ``on_checkpoint`` as they are measured; a runner that retries calls
        :func:`begin_attempt` on it before each attempt."""

    def true_value(self, weights: dict[str, float], model_params: int, steps: int | None,
                   objective: str) -> float | None:
        """The noiseless objective at a point, where the runner can know it (simulators)."""
        return None

    def true_optimum(self, model_params: int, steps: int | None,
                     objective: str) -> tuple[dict[str, float], float] | None:
        """The best mixture at a scale and its noiseless objective, where the runner knows it
        (the ``synthetic`` landscape): what regret is measured against. None elsewhere."""
        return None
