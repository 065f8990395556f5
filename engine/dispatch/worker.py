"""A local worker process: ``python -m engine.dispatch.worker --fd N``.

Started by :class:`engine.dispatch.local.LocalExecutor` as a fresh interpreter (not a
``multiprocessing`` child: that would re-import the caller's ``__main__``, which breaks
unguarded scripts and stdin), in its own session so the terminal's Ctrl-C reaches only the
dispatcher. It talks to the dispatcher over one end of a socket pair (fd ``N``), using
:class:`multiprocessing.connection.Connection` (pickled messages):

- dispatcher -> worker: ``{"sys_path": [...]}`` once, then ``(job_id, task)`` per task, or
  ``None`` to stop;
- worker -> dispatcher: ``("ready", pid)``, then ``("done", job_id, status)`` per task.

Thread counts (``OMP_NUM_THREADS`` ...) are set in its environment before it starts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys


def _on_term(signum, frame) -> None:  # pragma: no cover - runs in the worker
    from engine.runners.command import kill_active_children

    kill_active_children(signal.SIGKILL)
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - runs in the worker
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preload", action="append", default=[])
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from multiprocessing.connection import Connection

    conn = Connection(a.fd)
    parent = os.getppid()
    try:
        hello = conn.recv()
        for p in reversed(hello.get("sys_path", [])):
            if p not in sys.path:
                sys.path.insert(0, p)
        for mod in a.preload:
            try:
                importlib.import_module(mod)
            except Exception:  # noqa: BLE001 -- the task itself will report the import error
                pass
        if "torch" in sys.modules:
            try:
                sys.modules["torch"].set_num_threads(a.threads)
            except Exception:  # noqa: BLE001
                pass
        from engine.dispatch.task import execute_task

        conn.send(("ready", os.getpid()))
        while True:
            msg = conn.recv()
            if msg is None:
                break
            job_id, task = msg
            status = execute_task(task, parent_pid=parent)
            conn.send(("done", job_id, status))
    except (EOFError, OSError):
        pass  # the dispatcher is gone: nothing more will come
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
