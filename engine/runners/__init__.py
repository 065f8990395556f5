"""Runners: one approved trial in, checkpoints out (see :mod:`engine.runners.base`).

``make_runner(config)`` picks the runner a study names; the command runner is importable
directly; the built-in trainer's runner imports torch, so it is only loaded on demand.
"""

from engine.runners.base import Runner, RunFailed
from engine.runners.command import CommandRunner, parse_result, read_result
from engine.runners.registry import make_runner

__all__ = ["CommandRunner", "RunFailed", "Runner", "make_runner", "parse_result", "read_result"]
