"""Ctrl-C that survives DuckDB: a SIGINT handler that remembers the key was pressed.

DuckDB's Python client runs the interpreter's signal check while a query executes: with
Python's default handler the KeyboardInterrupt is raised inside the query and cleared there
(the program goes on as if nothing happened), and with a handler of ours the query fails with a
RuntimeError. The dispatcher spends much of its loop in store calls, so Ctrl-C on `mixplan run`
was sometimes lost (the run went on to the end). :class:`CtrlC` records the key press in its
handler, so the loop can raise it where the store swallowed or re-labelled it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CtrlC:
    """Whether SIGINT arrived while :func:`ctrl_c_guard` was active."""

    pressed = False

    def _on_sigint(self, signum, frame) -> None:  # noqa: ARG002 - the signal API's signature
        self.pressed = True
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed (and swallowed on its way up)."""
        if self.pressed:
            raise KeyboardInterrupt


@contextmanager
def ctrl_c_guard() -> Iterator[CtrlC]:
    """A :class:`CtrlC` whose handler is installed for the block (in the main thread only: the
    signal API allows no other; elsewhere the guard never reports a key press)."""
    guard = CtrlC()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, guard._on_sigint)
    try:
        yield guard
    finally:
        signal.signal(signal.SIGINT, previous)
