"""Ctrl-C (and `kill`) that survives DuckDB: signal handlers that remember the signal arrived.

DuckDB's Python client runs the interpreter's signal check while a query executes: with
Python's default handler the KeyboardInterrupt is raised inside the query and cleared there
(the program goes on as if nothing happened), and with a handler of ours the query fails with a
RuntimeError. The dispatcher spends much of its loop in store calls, so Ctrl-C on `mixplan run`
was sometimes lost (the run went on to the end). :class:`CtrlC` records the key press in its
handler, so the loop can raise it where the store swallowed or re-labelled it.

SIGTERM (`kill PID`, how a run started with `nohup` or by a scheduler is stopped) takes the same
way out as Ctrl-C: Python's default would end the process on the spot, leaving its workers to
run on unwatched; as :class:`Terminated` (a KeyboardInterrupt) the dispatcher stops its workers
and leaves the trials to the next run.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as on Ctrl-C (exit status 143 rather than 130)."""

    signum = signal.SIGTERM


class CtrlC:
    """Whether SIGINT (or SIGTERM) arrived while :func:`ctrl_c_guard` was active."""

    pressed = False
    signum: int | None = None

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002 - the signal API's signature
        self.pressed, self.signum = True, signum
        self.check()

    def check(self) -> None:
        """Raise KeyboardInterrupt (:class:`Terminated` for SIGTERM) if the signal arrived (and was
        swallowed on its way up)."""
        if self.pressed:
            raise Terminated if self.signum == signal.SIGTERM else KeyboardInterrupt


@contextmanager
def ctrl_c_guard() -> Iterator[CtrlC]:
    """A :class:`CtrlC` whose handlers are installed for the block, in the main thread only (the
    signal API allows no other; elsewhere the guard never reports a signal). A signal the process
    started with ignored (`nohup` ignores SIGHUP, a shell's background job SIGINT) stays ignored,
    as Python has it: a Ctrl-C meant for the terminal's foreground job is not ours. SIGTERM is
    taken over only from its default (a handler someone installed is kept)."""
    guard = CtrlC()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = {}
    for sig, replaceable in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        if signal.getsignal(sig) is replaceable:
            previous[sig] = signal.signal(sig, guard._on_signal)
    try:
        yield guard
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
