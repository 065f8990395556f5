"""The command runner (DESIGN.md contract 3): any trainer behind an argv.

mixplan starts the study's ``[runner] argv`` with its placeholders filled in -- never through a
shell -- and reads ``{out_dir}/result.json`` when the program exits::

    {"checkpoints": [{"tokens": .., "steps": .., "losses": {dom: ..}, "metrics": {..}}],
     "cost": ..}

Placeholders: ``{run_id} {weights_json} {model_params} {tokens} {steps} {out_dir} {seed}``;
``{weights_json}`` is the path of ``{out_dir}/weights.json``, ``{"domain": weight, ...}``,
written by mixplan before the start. Format specs work (``{steps:06d}``); attribute or index
access (``{run_id.x}``, ``{a[0]}``) does not.

What the runner does around the program:

- **Environment.** The program inherits this process's environment plus ``[runner] env``
  (a table of strings) and ``MIXPLAN_RUN_ID``, ``MIXPLAN_OUT_DIR``, ``MIXPLAN_WEIGHTS_JSON``.
  ``[runner] cwd`` sets its working directory (default: the current one).
- **Log.** stdout and stderr go to ``{out_dir}/run.log`` (appended to, one header per
  attempt), at most ``log_max_bytes`` (default 1,000,000) of output per attempt: the first
  half as it comes, then the latest half, behind a line saying how many bytes were dropped in
  between (a chatty trainer must not fill the disk). A failure carries the log's tail.
- **Timeout.** ``timeout_s`` per attempt; past it the program's whole process group gets
  SIGTERM, then SIGKILL after ``kill_grace_s`` (default 10).
- **Retries.** ``retries`` more attempts after a failure (non-zero exit, timeout, malformed
  result), waiting ``retry_backoff_s * 2**i`` (default 5 s) before the ``i``-th retry. Each
  attempt starts from scratch and streams its own checkpoints (announced with
  :func:`engine.runners.base.begin_attempt`), so a failed attempt's early checkpoints are
  replaced by the successful attempt's, never mixed with them.
- **Cancellation.** Setting the ``cancel`` event stops the program the same way as a timeout.
- **Partial results.** While the program runs, a ``progress.json`` or ``result.json`` it
  rewrites (same shape; ideally atomically: write a temporary file, then rename) is read
  every ``poll_s`` and checkpoints not seen before are handed to ``on_checkpoint``, so a long
  run's early checkpoints are kept even if it later dies. The final result.json is then
  parsed strictly.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from string import Formatter
from typing import Any

from engine.outfile import write_atomic
from engine.records import Checkpoint, RunResult, Trial
from engine.runners.base import Runner, RunFailed, begin_attempt

PLACEHOLDERS = ("run_id", "weights_json", "model_params", "tokens", "steps", "out_dir", "seed")
RESULT_FILE = "result.json"
#: files a running program may rewrite with the checkpoints it has so far (streamed to mixplan)
PARTIAL_FILES = ("progress.json", RESULT_FILE)
LOG_FILE = "run.log"
WEIGHTS_FILE = "weights.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: Process groups of the programs running in this process, so a worker told to stop (SIGTERM)
#: can take its programs down with it (see :func:`kill_active_children`).
_ACTIVE_PGIDS: set[int] = set()
_ACTIVE_LOCK = threading.Lock()


def kill_active_children(sig: int = signal.SIGKILL) -> None:
    """Signal the process group of every program this process's command runners started."""
    with _ACTIVE_LOCK:
        pgids = list(_ACTIVE_PGIDS)
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def log_tail(path: Path, max_chars: int = 4000, max_lines: int = 40) -> str:
    """The last lines of a log file ('' when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * max_chars))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = text.splitlines()[-max_lines:]
    return "\n".join(lines)[-max_chars:]


#: Default cap on the output one attempt keeps in run.log (head + tail).
LOG_MAX_BYTES = 1_000_000


class CappedLog:
    """Copies a program's output (a pipe) into its log file, keeping at most ``max_bytes``:
    the first half as it arrives, then the most recent half, rewritten at most every
    ``flush_s`` behind one line that says how many bytes were dropped. Why a thread and a
    pipe rather than the file as the program's stdout: only a reader in between can drop the
    middle of the output and keep its end, which is where a failure shows."""

    def __init__(self, pipe: Any, log_path: Path, max_bytes: int = LOG_MAX_BYTES, flush_s: float = 1.0) -> None:
        self.pipe, self.max_bytes, self.flush_s = pipe, int(max_bytes), flush_s
        self.fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.start = os.fstat(self.fd).st_size
        self.head_left = self.max_bytes - self.max_bytes // 2
        self.tail_cap = self.max_bytes // 2
        self.tail = bytearray()
        self.dropped = 0
        self.dirty = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="mixplan-log", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        import select

        fd = self.pipe.fileno()
        last_flush = time.monotonic()
        while True:
            ready, _, _ = select.select([fd], [], [], 0.2)
            chunk = os.read(fd, 65536) if ready else b""
            if ready and not chunk:
                break  # end of output: every writer closed the pipe
            if chunk:
                self._take(chunk)
            elif self._stop.is_set():
                break  # asked to stop and nothing more to read (an escaped child keeps the pipe)
            if self.dirty and time.monotonic() - last_flush >= self.flush_s:
                self._flush()
                last_flush = time.monotonic()
        self._flush()

    def _take(self, chunk: bytes) -> None:
        if self.head_left > 0:
            part = chunk[:self.head_left]
            os.write(self.fd, part)
            self.head_left -= len(part)
            chunk = chunk[len(part):]
        if chunk:
            self.tail += chunk
            over = len(self.tail) - self.tail_cap
            if over > 0:
                del self.tail[:over]
                self.dropped += over
            self.dirty = True

    def _flush(self) -> None:
        """Rewrite everything after the head: the note on dropped bytes, then the tail."""
        if not self.dirty:
            return
        head_end = self.start + (self.max_bytes - self.max_bytes // 2) - self.head_left
        os.ftruncate(self.fd, head_end)
        note = b""
        if self.dropped:
            note = (f"\n=== mixplan: {self.dropped:,} bytes of output dropped here (runner.log_max_bytes = "
                    f"{self.max_bytes:,} keeps the first and the last {self.tail_cap:,} bytes) ===\n").encode()
        os.write(self.fd, note + bytes(self.tail))
        self.dirty = False

    def close(self, timeout_s: float = 5.0) -> None:
        """Read what is left, write the log's end and close (waiting at most ``timeout_s``)."""
        self._stop.set()
        self._thread.join(timeout_s)
        try:
            self.pipe.close()
        except OSError:
            pass
        if not self._thread.is_alive():
            os.close(self.fd)


# ---- argv templates ------------------------------------------------------------------------
def check_template(argv: Sequence[str]) -> None:
    """Reject an argv template with unknown placeholders or attribute/index access."""
    if not argv:
        raise ValueError("the command runner needs a non-empty argv.")
    for arg in argv:
        if not isinstance(arg, str):
            raise ValueError(f"argv entries must be strings, got {arg!r}.")
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in Formatter().parse(arg) if f is not None]
        except ValueError as exc:
            raise ValueError(f"bad placeholder in {arg!r} ({exc}); write a literal brace as '{{{{' or '}}}}'.") from exc
        for name, _, conv in fields:
            if name not in PLACEHOLDERS:
                raise ValueError(f"unknown placeholder {{{name}}} in {arg!r}; placeholders are "
                                 + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + ".")
            if conv:
                raise ValueError(f"conversion !{conv} is not supported in {arg!r}.")


def render_argv(argv: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """Fill the placeholders of each argv entry; never joins or splits entries (no shell).
    A placeholder whose value is None raises :class:`RunFailed` naming it."""
    check_template(argv)
    out = []
    for arg in argv:
        parts = []
        for literal, name, spec, _ in Formatter().parse(arg):
            parts.append(literal)
            if name is None:
                continue
            value = values.get(name)
            if value is None:
                raise RunFailed(f"the argv uses {{{name}}} but this trial has no {name} "
                                + ("(set tokens_per_step in the study config to convert steps <-> tokens)."
                                   if name in ("tokens", "steps") else "."))
            try:
                parts.append(format(value, spec or ""))
            except (ValueError, TypeError) as exc:
                raise RunFailed(f"cannot format {{{name}:{spec}}} with {value!r}: {exc}") from exc
        out.append("".join(parts))
    return out


def _int_if_integral(x: float | int | None) -> float | int | None:
    if x is None:
        return None
    x = float(x)
    return int(x) if x.is_integer() else x


# ---- result.json ---------------------------------------------------------------------------
def _number(v: Any, where: str, *, allow_none: bool = False, minimum: float | None = None) -> float | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ValueError(f"{where} must be a finite number, got {v!r}")
    if minimum is not None and float(v) < minimum:
        raise ValueError(f"{where} must be >= {minimum:g}, got {v!r}")
    return float(v)


def _values(d: Any, where: str, *, required: bool) -> dict[str, float]:
    if d is None and not required:
        return {}
    if not isinstance(d, dict) or (required and not d):
        raise ValueError(f"{where} must be a non-empty object {{name: number}}, got {d!r}"
                         if required else f"{where} must be an object {{name: number}}, got {d!r}")
    out = {}
    for k, v in d.items():
        if not isinstance(k, str) or not _NAME_RE.match(k):
            raise ValueError(f"{where}: bad name {k!r} (letters, digits, '_', '-', '.')")
        out[k] = _number(v, f"{where}[{k!r}]")
    return out


def parse_checkpoint(c: Any, where: str) -> Checkpoint:
    """One checkpoint object of result.json, validated."""
    if not isinstance(c, dict):
        raise ValueError(f"{where} must be an object, got {type(c).__name__}")
    steps = c.get("steps")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, (int, float)) or float(steps) != int(steps) or steps < 0:
            raise ValueError(f"{where}.steps must be a non-negative integer, got {steps!r}")
        steps = int(steps)
    tokens = _number(c.get("tokens"), f"{where}.tokens", allow_none=True, minimum=0)
    if steps is None and tokens is None:
        raise ValueError(f"{where} needs 'steps' or 'tokens'")
    return Checkpoint(
        steps=steps, tokens=tokens,
        losses=_values(c.get("losses"), f"{where}.losses", required=True),
        metrics=_values(c.get("metrics"), f"{where}.metrics", required=False),
        cost=_number(c.get("cost"), f"{where}.cost", allow_none=True, minimum=0),
        wall_s=_number(c.get("wall_s"), f"{where}.wall_s", allow_none=True, minimum=0),
    )


def parse_result(obj: Any) -> RunResult:
    """Validate a decoded result.json (contract 3); raises ValueError saying what is wrong.
    Extra keys are ignored; ``info`` (an object) is kept in :attr:`RunResult.info`."""
    if not isinstance(obj, dict):
        raise ValueError(f"the top level must be an object, got {type(obj).__name__}")
    cks = obj.get("checkpoints")
    if not isinstance(cks, list) or not cks:
        raise ValueError("'checkpoints' must be a non-empty list")
    checkpoints = [parse_checkpoint(c, f"checkpoints[{i}]") for i, c in enumerate(cks)]
    keys = [(c.steps, c.tokens) for c in checkpoints]
    if len(set(keys)) != len(keys):
        raise ValueError("two checkpoints have the same steps and tokens")
    info = obj.get("info", {})
    if not isinstance(info, dict):
        raise ValueError(f"'info' must be an object, got {info!r}")
    return RunResult(checkpoints=checkpoints,
                     cost=_number(obj.get("cost"), "cost", allow_none=True, minimum=0),
                     wall_s=_number(obj.get("wall_s"), "wall_s", allow_none=True, minimum=0),
                     info=dict(info))


def read_result(path: Path) -> RunResult:
    """Read and validate a result.json; ValueError says what is wrong (missing file included)."""
    if not path.exists():
        raise ValueError(f"the program exited 0 but wrote no {path.name} in {path.parent}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name} is not valid JSON ({exc})") from exc
    return parse_result(obj)


# ---- the runner ----------------------------------------------------------------------------
class CommandRunner(Runner):
    """Runs a user's program per trial. Picklable (plain attributes only)."""

    kind = "command"

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float = 3600.0,
        retries: int = 0,
        retry_backoff_s: float = 5.0,
        kill_grace_s: float = 10.0,
        cwd: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        poll_s: float = 0.5,
        default_seed: int = 0,
        log_max_bytes: int = LOG_MAX_BYTES,
    ) -> None:
        check_template(argv)
        if timeout_s <= 0 or retries < 0 or retry_backoff_s < 0 or kill_grace_s < 0 or poll_s <= 0:
            raise ValueError("timeout_s and poll_s must be > 0; retries, retry_backoff_s and kill_grace_s >= 0.")
        if int(log_max_bytes) < 1024:
            raise ValueError(f"log_max_bytes must be >= 1024, got {log_max_bytes}.")
        self.log_max_bytes = int(log_max_bytes)
        self.argv = tuple(argv)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.retry_backoff_s = float(retry_backoff_s)
        self.kill_grace_s = float(kill_grace_s)
        self.cwd = None if cwd is None else str(cwd)
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.poll_s = float(poll_s)
        self.default_seed = int(default_seed)

    @classmethod
    def from_config(cls, config) -> "CommandRunner":
        """Build from a :class:`~engine.config.StudyConfig` (``[runner]`` options: ``cwd``,
        ``env``, ``retry_backoff_s``, ``kill_grace_s``, ``poll_s``, ``log_max_bytes``)."""
        from engine.errors import ConfigError

        r = config.runner
        opts = dict(r.options)
        env = opts.get("env", {})
        if not isinstance(env, dict) or any(not isinstance(v, (str, int, float)) for v in env.values()):
            raise ConfigError("key 'runner.env': expected a table of NAME = \"value\".")
        try:
            return cls(r.argv, timeout_s=r.timeout_s, retries=r.retries,
                       retry_backoff_s=float(opts.get("retry_backoff_s", 5.0)),
                       kill_grace_s=float(opts.get("kill_grace_s", 10.0)),
                       cwd=opts.get("cwd"), env=env, poll_s=float(opts.get("poll_s", 0.5)),
                       default_seed=config.seed, log_max_bytes=int(opts.get("log_max_bytes", LOG_MAX_BYTES)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"key 'runner': {exc}") from exc

    def __repr__(self) -> str:
        return f"CommandRunner(argv={list(self.argv)!r}, timeout_s={self.timeout_s:g}, retries={self.retries})"

    # -- one trial -------------------------------------------------------------------------
    def placeholder_values(self, trial: Trial, out_dir: Path) -> dict[str, Any]:
        return {
            "run_id": trial.run_id,
            "weights_json": str(out_dir / WEIGHTS_FILE),
            "model_params": int(trial.model_params),
            "tokens": _int_if_integral(trial.tokens),
            "steps": None if trial.steps is None else int(trial.steps),
            "out_dir": str(out_dir),
            "seed": int(trial.seed) if trial.seed is not None else self.default_seed,
        }

    def run(self, trial: Trial, out_dir: Path, *, cancel: threading.Event | None = None,
            on_checkpoint: Callable[[Checkpoint], None] | None = None) -> RunResult:
        out_dir = Path(out_dir).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(out_dir / WEIGHTS_FILE, json.dumps(dict(trial.weights)), durable=True)
        argv = render_argv(self.argv, self.placeholder_values(trial, out_dir))
        cancel = cancel or threading.Event()
        last: RunFailed | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                if cancel.wait(self.retry_backoff_s * 2 ** (attempt - 1)):
                    raise RunFailed("cancelled", log_tail(out_dir / LOG_FILE))
            # each attempt streams its own checkpoints; the failed attempt's are void
            begin_attempt(on_checkpoint, attempt)
            seen: set[tuple[int | None, float | None]] = set()
            try:
                return self._attempt(argv, trial, out_dir, attempt, cancel, on_checkpoint, seen)
            except RunFailed as exc:
                last = exc
                if exc.reason == "cancelled":
                    raise
        assert last is not None
        if self.retries:
            raise RunFailed(f"{last.reason} (after {self.retries + 1} attempts)", last.log_tail)
        raise last

    def _attempt(self, argv: list[str], trial: Trial, out_dir: Path, attempt: int, cancel: threading.Event,
                 on_checkpoint: Callable[[Checkpoint], None] | None,
                 seen: set[tuple[int | None, float | None]]) -> RunResult:
        result_path = out_dir / RESULT_FILE
        log_path = out_dir / LOG_FILE
        for name in PARTIAL_FILES:  # never read a previous attempt's results
            (out_dir / name).unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(self.env)
        env.update({"MIXPLAN_RUN_ID": trial.run_id, "MIXPLAN_OUT_DIR": str(out_dir),
                    "MIXPLAN_WEIGHTS_JSON": str(out_dir / WEIGHTS_FILE)})
        with open(log_path, "ab") as log:
            log.write(f"=== mixplan: attempt {attempt + 1}/{self.retries + 1} of run {trial.run_id} at "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {argv!r}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
            except OSError as exc:
                log.write(f"=== mixplan: could not start {argv[0]!r}: {exc}\n".encode())
                log.flush()
                raise RunFailed(f"could not start {argv[0]!r}: {exc}", log_tail(log_path)) from exc
        capped = CappedLog(proc.stdout, log_path, self.log_max_bytes)
        with _ACTIVE_LOCK:
            _ACTIVE_PGIDS.add(proc.pid)
        t0 = time.monotonic()
        stopped: str | None = None
        last_mtime = None
        try:  # the log's end is written whatever happens (an interrupt, a sink that raises)
            try:
                while True:
                    try:
                        rc = proc.wait(timeout=self.poll_s)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if on_checkpoint is not None:
                        last_mtime = self._stream(out_dir, last_mtime, on_checkpoint, seen)
                    if cancel.is_set():
                        stopped = "cancelled"
                    elif time.monotonic() - t0 > self.timeout_s:
                        stopped = f"timed out after {self.timeout_s:g} s"
                    if stopped:
                        rc = self._kill(proc)
                        break
            finally:
                with _ACTIVE_LOCK:
                    _ACTIVE_PGIDS.discard(proc.pid)
                if proc.poll() is None:  # interrupted (e.g. KeyboardInterrupt): never leave it behind
                    self._kill(proc)
            if on_checkpoint is not None:  # what it measured before it ended is kept, whatever the end
                self._stream(out_dir, last_mtime, on_checkpoint, seen)
            # the group may still hold children of the program (a trainer's data workers)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        finally:
            capped.close()
        wall = time.monotonic() - t0
        with open(log_path, "ab") as log:
            log.write(f"=== mixplan: exit status {rc} after {wall:.1f} s{'; ' + stopped if stopped else ''}\n".encode())
        if stopped:
            raise RunFailed(stopped, log_tail(log_path))
        if rc != 0:
            how = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            raise RunFailed(f"the program {how}", log_tail(log_path))
        try:
            result = read_result(result_path)
        except ValueError as exc:
            raise RunFailed(f"malformed result: {exc}", log_tail(log_path)) from exc
        if on_checkpoint is not None:
            for c in result.checkpoints:
                if (c.steps, c.tokens) not in seen:
                    seen.add((c.steps, c.tokens))
                    on_checkpoint(c)
        info = {"runner": "command", "argv": argv, "attempts": attempt + 1, "log": str(log_path), **result.info}
        return RunResult(result.checkpoints, result.cost,
                         result.wall_s if result.wall_s is not None else wall, info)

    def _kill(self, proc: subprocess.Popen) -> int:
        """SIGTERM the program's process group, SIGKILL after the grace period; its status."""
        for sig, wait in ((signal.SIGTERM, self.kill_grace_s), (signal.SIGKILL, 30.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                return proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        return proc.wait()

    @staticmethod
    def _stream(out_dir: Path, last: tuple | None, on_checkpoint: Callable[[Checkpoint], None],
                seen: set[tuple[int | None, float | None]]) -> tuple | None:
        """Hand new checkpoints of a partial ``result.json`` or ``progress.json`` to
        ``on_checkpoint`` (lenient: a file caught mid-write or still malformed is skipped;
        the final read of result.json is strict)."""
        stamps = []
        for name in PARTIAL_FILES:
            try:
                stamps.append((out_dir / name).stat().st_mtime_ns)
            except OSError:
                stamps.append(None)
        stamp = tuple(stamps)
        if stamp == last:
            return last
        for name in PARTIAL_FILES:
            try:
                obj = json.loads((out_dir / name).read_text(encoding="utf-8"))
                cks = obj.get("checkpoints", []) if isinstance(obj, dict) else []
            except (OSError, ValueError):
                continue
            for i, c in enumerate(cks if isinstance(cks, list) else []):
                try:
                    ck = parse_checkpoint(c, f"checkpoints[{i}]")
                except ValueError:
                    continue
                if (ck.steps, ck.tokens) not in seen:
                    seen.add((ck.steps, ck.tokens))
                    on_checkpoint(ck)
        return stamp
