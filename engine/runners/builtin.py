"""The built-in trainer as a runner (``[runner] kind = "builtin"``).

**In-process by default.** ``import torch`` costs 3-6 s per process (FACTS.md) and a tiny CPU
run lasts seconds, so a process per run would double the cost of small studies. The runner
therefore calls :func:`engine.training.trainer.train` inside the worker that runs it; the
local executor keeps its workers alive across trials and imports torch in all of them at
start-up, in parallel (:attr:`BuiltinRunner.preload`). The price of sharing a process -- no
hard kill of one run -- is paid as follows: a timeout or a cancellation raises inside the
training loop within one optimiser step (a signal handler, when the run is on the main
thread, as in local workers and SLURM jobs) or at the next checkpoint (elsewhere, e.g. a Ray
actor's thread), and the dispatcher's hard limit kills the worker if all else fails.
``isolate = true`` runs each trial as ``python -m engine.training.cli_train`` through the
command runner instead (a process per run; use it if runs leak memory, e.g. on GPUs).

**Model size.** ``model_params`` picks the nearest rung of the trainer's ladder (in log
space); the rung used is reported in ``RunResult.info`` (``size``, ``size_used``,
``model_params`` actual vs ``requested_params``), which the store keeps in the trial's
``done`` event.

**Cost** is reported in the study's unit, the one its proposals are priced in
(:meth:`engine.config.StudyConfig.cost` of the steps actually trained): ``cost_per_step x
steps`` where the trial's scale has a ``cost_per_step``, else ``6 x model_params x tokens``
FLOPs with the *requested* ``model_params`` and the study's ``tokens_per_step`` (the trainer's
``batch_size x context`` where the study has none). Checkpoints carry the cost so far in the
same unit. What the run really took stays in ``info``: ``flops`` (6 x the rung's actual
non-embedding parameters x tokens), ``wall_s``, ``train_s`` and ``cost_unit``.

**Timeout.** ``timeout_s`` bounds each attempt's training (model build, steps, evaluation);
its clock starts once the corpus is ready, because preparing missing built-in domains is not
interruptible and has its own limit (each download or unpack command gives up after 600 s;
the dispatcher's hard limit allows for it, :attr:`BuiltinRunner.setup_s`). With ``isolate =
true`` the command runner's timeout covers the whole process, preparation included.
Retries (``retries``) wait ``retry_backoff_s x 2**i`` (at most 60 s) before the ``i``-th.

**Provenance.** ``info["corpus"]`` names the corpus root and, per domain, the manifest's
``name``, ``package``, ``version``, ``source``, ``licence`` and recipe ``key``, so a stored run
says exactly which data it was trained on.

``[runner]`` options: ``corpus`` (a prepared corpus directory; default ``$MIXPLAN_CACHE`` or
``~/.cache/mixplan/corpus``; missing built-in domains are prepared on first use),
``batch_size`` (16), ``context`` (128), ``lr``, ``checkpoints`` (4 evenly spaced; or
``eval_every``), ``eval_batches`` (4), ``threads`` (1), ``device`` (``cpu``/``cuda``; default
cuda when present), ``isolate`` (false). Evaluation domains are the study's ``eval_domains``,
else its mixture domains. A trial given in tokens trains ``ceil(tokens / (batch_size x
context))`` steps; set ``tokens_per_step = batch_size x context`` in the study so steps and
tokens agree.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any, ClassVar

from engine.config import StudyConfig
from engine.records import Checkpoint, RunResult, Trial
from engine.runners.base import MappedSink, Runner, RunFailed, begin_attempt

_CORPORA: dict[tuple[str, tuple[str, ...]], Any] = {}  # per-process cache of loaded corpora


class _Stop(BaseException):
    """Raised inside the training loop to stop it (not an Exception: nothing swallows it)."""


class _StopSignal:
    """SIGUSR1 -> :class:`_Stop` in the main thread while a run there is armed. Installed once
    per process and never removed, so a late signal can never meet the default action
    (which would kill the process)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.installed = False

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        if not self.installed:
            signal.signal(signal.SIGUSR1, self._handle)
            self.installed = True
        return True

    def _handle(self, signum, frame) -> None:
        reason, self.reason = self.reason, None
        if reason:
            raise _Stop(reason)


_STOP = _StopSignal()


class BuiltinRunner(Runner):
    """Trains the built-in GPT per trial. Picklable (plain attributes)."""

    kind = "builtin"
    #: modules a local worker imports at start-up (in parallel with its siblings)
    preload: ClassVar[tuple[str, ...]] = ("torch", "engine.training.trainer")
    #: seconds a submission may spend before its first attempt's clock starts (preparing
    #: missing corpus domains; see the module doc); the dispatcher's hard limit adds them
    setup_s: ClassVar[float] = 600.0

    def __init__(self, *, eval_domains: tuple[str, ...] | list[str] | None = None, corpus: str | None = None,
                 batch_size: int = 16, context: int = 128, lr: float | None = None, checkpoints: int = 4,
                 eval_every: int | None = None, eval_batches: int = 4, threads: int = 1, device: str | None = None,
                 timeout_s: float = 3600.0, retries: int = 0, isolate: bool = False, default_seed: int = 0,
                 tokens_per_step: int | None = None, retry_backoff_s: float = 5.0,
                 study: StudyConfig | None = None) -> None:
        if batch_size < 1 or context < 1 or checkpoints < 1 or eval_batches < 1 or threads < 1 or timeout_s <= 0:
            raise ValueError("batch_size, context, checkpoints, eval_batches, threads must be >= 1 and "
                             "timeout_s > 0.")
        if retry_backoff_s < 0:
            raise ValueError("retry_backoff_s must be >= 0.")
        self.eval_domains = tuple(eval_domains or ())
        self.corpus = None if corpus is None else str(Path(corpus).expanduser())
        self.batch_size, self.context, self.lr = int(batch_size), int(context), lr
        self.checkpoints, self.eval_every, self.eval_batches = int(checkpoints), eval_every, int(eval_batches)
        self.threads, self.device = int(threads), device
        self.timeout_s, self.retries = float(timeout_s), int(retries)
        self.isolate = bool(isolate)
        self.default_seed = int(default_seed)
        self.tokens_per_step = tokens_per_step
        self.retry_backoff_s = float(retry_backoff_s)
        #: the study whose cost unit runs are reported in (None: FLOPs with the trainer's tokens)
        self.study = study

    @classmethod
    def from_config(cls, config) -> "BuiltinRunner":
        from engine.errors import ConfigError

        o = dict(config.runner.options)
        allowed = {"corpus", "batch_size", "context", "lr", "checkpoints", "eval_every", "eval_batches", "threads",
                   "device", "isolate", "retry_backoff_s"}
        from engine.config import EXECUTOR_KEYS, RUNNER_COMMON_KEYS

        # plus the keys every kind accepts (domain_sizes: the natural model's, not the trainer's)
        executor_keys = set().union(*EXECUTOR_KEYS.values()) | RUNNER_COMMON_KEYS
        unknown = sorted(k for k in o if k not in allowed and k not in executor_keys and not k.startswith("slurm_"))
        if unknown:
            raise ConfigError(f"key 'runner.{unknown[0]}': not an option of the builtin runner.",
                              fix=f"builtin options: {', '.join(sorted(allowed))}.")
        try:
            return cls(eval_domains=config.eval_domains or config.domains, corpus=o.get("corpus"),
                       batch_size=int(o.get("batch_size", 16)), context=int(o.get("context", 128)),
                       lr=None if o.get("lr") is None else float(o["lr"]),
                       checkpoints=int(o.get("checkpoints", 4)),
                       eval_every=None if o.get("eval_every") is None else int(o["eval_every"]),
                       eval_batches=int(o.get("eval_batches", 4)), threads=int(o.get("threads", 1)),
                       device=o.get("device"), timeout_s=config.runner.timeout_s, retries=config.runner.retries,
                       isolate=bool(o.get("isolate", False)), default_seed=config.seed,
                       tokens_per_step=config.tokens_per_step,
                       retry_backoff_s=float(o.get("retry_backoff_s", 5.0)), study=config)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"key 'runner': {exc}") from exc

    def __repr__(self) -> str:
        return (f"BuiltinRunner(batch_size={self.batch_size}, context={self.context}, checkpoints={self.checkpoints}, "
                f"threads={self.threads}, isolate={self.isolate})")

    # ---- helpers -------------------------------------------------------------------------
    def steps_for(self, trial: Trial) -> int:
        if trial.steps is not None:
            return int(trial.steps)
        if trial.tokens is not None:
            return max(1, math.ceil(float(trial.tokens) / (self.batch_size * self.context)))
        raise RunFailed("the trial has neither steps nor tokens.")

    def eval_steps(self, steps: int) -> list[int]:
        if self.eval_every:
            return []
        n = min(self.checkpoints, steps)
        return sorted({max(1, round(steps * i / n)) for i in range(1, n + 1)})

    def cost(self, model_params: int, steps: int) -> float:
        """Cost of ``steps`` steps of a trial of ``model_params`` (requested) in the study's
        unit: :meth:`StudyConfig.cost` where it can price the run, else 6 x model_params x the
        trainer's tokens (FLOPs)."""
        if self.study is not None:
            c = self.study.cost(int(model_params), steps=int(steps))
            if c is not None:
                return float(c)
        return 6.0 * float(model_params) * float(steps) * self.batch_size * self.context

    def cost_unit(self, model_params: int) -> str:
        scale = self.study.scale_for(int(model_params)) if self.study is not None else None
        if scale is not None and scale.cost_per_step is not None:
            return f"the study's cost_per_step ({scale.cost_per_step:g}) x steps"
        tps = (self.study.tokens_per_step if self.study is not None else None) or self.batch_size * self.context
        return f"FLOPs: 6 x requested model_params x tokens ({tps} tokens per step)"

    def in_study_units(self, trial: Trial, result: RunResult) -> RunResult:
        """``result`` with its cost and its checkpoints' costs in the study's unit; what the
        run really took (``flops`` with the rung's parameters, ``wall_s``) kept in ``info``."""
        cks = [dc_replace(c, cost=self.cost(trial.model_params, c.steps)) if c.steps is not None else c
               for c in result.checkpoints]
        steps = max((c.steps for c in result.checkpoints if c.steps is not None), default=self.steps_for(trial))
        info = dict(result.info)
        if result.cost is not None:
            info.setdefault("flops", result.cost)
        info["wall_s"] = result.wall_s
        info["cost_unit"] = self.cost_unit(trial.model_params)
        return RunResult(cks, self.cost(trial.model_params, steps), result.wall_s, info)

    def _study_sink(self, trial: Trial, on_checkpoint: Callable[[Checkpoint], None] | None):
        """``on_checkpoint`` fed checkpoints whose cost is in the study's unit."""
        if on_checkpoint is None:
            return None
        return MappedSink(on_checkpoint, lambda c: dc_replace(c, cost=self.cost(trial.model_params, c.steps))
                          if c.steps is not None else c)

    def corpus_root(self) -> Path:
        from engine.data.corpus import default_cache_dir

        return Path(self.corpus) if self.corpus else default_cache_dir()

    def load_corpus(self, domains: list[str], log: Callable[[str], None]):
        """The corpus (cached per process), preparing built-in domains it lacks."""
        from engine.data.corpus import Corpus, prepare_corpus, read_manifest
        from engine.data.sources import BUILTIN_SOURCES
        from engine.errors import NotFoundError

        root = self.corpus_root()
        key = (str(root), tuple(domains))
        if key in _CORPORA:
            return _CORPORA[key]
        try:
            have = set(read_manifest(root).domains)
        except NotFoundError:
            have = set()
        need = [d for d in domains if d not in have]
        if need:
            unknown = [d for d in need if d not in BUILTIN_SOURCES]
            if unknown:
                raise RunFailed(f"domain(s) {unknown} are neither in the corpus at {root} nor built-in; prepare "
                                f"them with `mixplan data prepare --cache-dir {root} --add NAME=PATH`.")
            log(f"preparing domain(s) {need} in {root}")
            prepare_corpus(root, need)
        corpus = Corpus.load(root, domains)
        _CORPORA[key] = corpus
        return corpus

    # ---- run -----------------------------------------------------------------------------
    def run(self, trial: Trial, out_dir: Path, *, cancel: threading.Event | None = None,
            on_checkpoint: Callable[[Checkpoint], None] | None = None) -> RunResult:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.isolate:
            return self._run_isolated(trial, out_dir, cancel, on_checkpoint)
        cancel = cancel or threading.Event()
        last: RunFailed | None = None
        for attempt in range(self.retries + 1):
            if attempt and cancel.wait(min(60.0, self.retry_backoff_s * 2 ** (attempt - 1))):
                raise RunFailed("cancelled")
            begin_attempt(on_checkpoint, attempt)  # a retry trains from scratch: earlier checkpoints are void
            try:
                return self.in_study_units(trial, self._attempt(trial, out_dir, cancel,
                                                                self._study_sink(trial, on_checkpoint), attempt))
            except RunFailed as exc:
                last = exc
                if exc.reason == "cancelled":
                    raise
        assert last is not None
        raise last

    def _attempt(self, trial: Trial, out_dir: Path, cancel: threading.Event,
                 on_checkpoint: Callable[[Checkpoint], None] | None, attempt: int) -> RunResult:
        import traceback

        log_path = out_dir / "run.log"
        logf = open(log_path, "a", encoding="utf-8")

        def log(msg: str) -> None:
            logf.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
            logf.flush()

        def tail() -> str:
            from engine.runners.command import log_tail

            logf.flush()
            return log_tail(log_path)

        deadline = math.inf  # set once the corpus is ready (preparing it has its own limits)
        done = threading.Event()

        def should_stop() -> str | None:
            if cancel.is_set():
                return "cancelled"
            if time.monotonic() > deadline:
                return f"timed out after {self.timeout_s:g} s"
            return None

        def watchdog() -> None:  # raises in the training loop within one step (main thread only)
            while not done.wait(0.2):
                why = should_stop()
                if why:
                    _STOP.reason = why
                    os.kill(os.getpid(), signal.SIGUSR1)
                    return

        def on_ck(ck: Checkpoint) -> None:
            log(f"checkpoint at step {ck.steps}: " + ", ".join(f"{d} {v:.4f}" for d, v in ck.losses.items()))
            if on_checkpoint is not None:
                on_checkpoint(ck)
            why = should_stop()  # off the main thread this is where a stop lands
            if why:
                raise _Stop(why)

        try:
            from engine.errors import MixplanError
            from engine.training.model import nearest_size
            from engine.training.trainer import TrainSpec, train

            steps = self.steps_for(trial)
            size = nearest_size(trial.model_params)
            log(f"=== mixplan builtin: attempt {attempt + 1}/{self.retries + 1} of run {trial.run_id}: "
                f"{size.describe()}, {steps} steps, weights {trial.weights}")
            domains = sorted({*(d for d, w in trial.weights.items() if w > 0), *self.eval_domains})
            corpus = self.load_corpus(domains, log)
            deadline = time.monotonic() + self.timeout_s
            spec = TrainSpec(weights={d: w for d, w in trial.weights.items() if w > 0}, model_params=trial.model_params,
                             steps=steps, seed=int(trial.seed) if trial.seed is not None else self.default_seed,
                             batch_size=self.batch_size, context=self.context, lr=self.lr,
                             eval_every=self.eval_every, eval_steps=self.eval_steps(steps) or None,
                             eval_batches=self.eval_batches, eval_domains=list(self.eval_domains) or None,
                             threads=self.threads)
            if _STOP.install():
                threading.Thread(target=watchdog, daemon=True, name="mixplan-builtin-watchdog").start()
            try:
                result = train(spec, corpus, on_checkpoint=on_ck, device=self.device, log=log)
            finally:
                done.set()
                _STOP.reason = None
        except _Stop as stop:
            raise RunFailed(str(stop), tail()) from None
        except RunFailed as exc:
            raise RunFailed(exc.reason, exc.log_tail or tail()) from None
        except MixplanError as exc:
            log(f"error: {exc}")
            raise RunFailed(str(exc), tail()) from None
        except Exception as exc:  # noqa: BLE001 -- a crash of the trainer fails the trial
            log(traceback.format_exc())
            raise RunFailed(f"the trainer crashed: {type(exc).__name__}: {exc}", tail()) from None
        finally:
            done.set()
            _STOP.reason = None
            logf.close()
        info = dict(result.info)
        info.update({"runner": "builtin", "size_used": size.describe(), "attempts": attempt + 1, "log": str(log_path)})
        tps = self.batch_size * self.context
        if self.tokens_per_step is not None and self.tokens_per_step != tps:
            info["warning"] = (f"the study's tokens_per_step ({self.tokens_per_step}) differs from the trainer's "
                               f"batch_size x context ({tps}); stored tokens are the trainer's")
        return RunResult(result.checkpoints, result.cost, result.wall_s, info)

    def _run_isolated(self, trial: Trial, out_dir: Path, cancel: threading.Event | None,
                      on_checkpoint: Callable[[Checkpoint], None] | None) -> RunResult:
        """One ``python -m engine.training.cli_train`` per trial, through the command runner."""
        from engine.runners.command import CommandRunner

        argv = [sys.executable, "-m", "engine.training.cli_train", "--weights", "{weights_json}",
                "--params", "{model_params}", "--steps", str(self.steps_for(trial)), "--out", "{out_dir}",
                "--seed", "{seed}", "--batch-size", str(self.batch_size), "--context", str(self.context),
                "--eval-batches", str(self.eval_batches), "--threads", str(self.threads)]
        if self.corpus:
            argv += ["--corpus", self.corpus]
        if self.lr is not None:
            argv += ["--lr", repr(float(self.lr))]
        if self.eval_every:
            argv += ["--eval-every", str(self.eval_every)]
        else:
            argv += ["--eval-steps", ",".join(map(str, self.eval_steps(self.steps_for(trial))))]
        if self.device:
            argv += ["--device", self.device]
        runner = CommandRunner(argv, timeout_s=self.timeout_s, retries=self.retries, default_seed=self.default_seed,
                               retry_backoff_s=self.retry_backoff_s)
        res = runner.run(trial, out_dir, cancel=cancel, on_checkpoint=self._study_sink(trial, on_checkpoint))
        from engine.training.model import nearest_size

        info = dict(res.info)
        info.update({"runner": "builtin", "isolated": True, "size_used": nearest_size(trial.model_params).describe()})
        return self.in_study_units(trial, RunResult(res.checkpoints, res.cost, res.wall_s, info))
