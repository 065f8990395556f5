"""Study config: the TOML a user writes to describe a study (DESIGN.md contract 4).

A :class:`StudyConfig` is plain, typed and immutable; it is parsed from TOML with
:func:`load_config` / :func:`parse_config`, validated with messages that name the key and the
fix, and stored in the database as JSON (:meth:`StudyConfig.to_dict`). Everything optional has a
default, so a config of a name and its domains is enough to import runs and fit models.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
DOMAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
RUNNER_KINDS = ("builtin", "command", "mfms-sim", "table", "synthetic")
#: [runner] keys every kind accepts: the common four, ``domain_sizes`` (tokens per domain, read
#: by the ``natural`` model whatever the runner) and ``unknown_values`` (what the store does with
#: a result naming a loss or metric the study does not have: "fail" the trial, or "keep" the
#: values apart; see Store._checked_results).
RUNNER_COMMON_KEYS = frozenset({"kind", "argv", "timeout_s", "retries", "domain_sizes", "unknown_values"})
#: [runner] keys each runner reads (its ``from_config``); a key that no runner and no executor
#: reads is a typo that would otherwise be ignored in silence (``timeuot_s``).
RUNNER_KEYS = {
    "builtin": frozenset({"corpus", "batch_size", "context", "lr", "checkpoints", "eval_every", "eval_batches",
                          "threads", "device", "isolate"}),
    "command": frozenset({"cwd", "env", "retry_backoff_s", "kill_grace_s", "poll_s", "log_max_bytes"}),
    "mfms-sim": frozenset({"path", "noise", "checkpoint_every"}),
    "table": frozenset({"path", "match", "max_distance"}),
    "synthetic": frozenset({"noise", "checkpoint_every", "landscape_seed", "pivot", "width"}),
}
#: [runner] keys the executors read (engine.dispatch.executors.EXECUTOR_KEYS, all executors),
#: with any ``slurm_*`` key passed through to submitit.
#: The [runner] keys each executor reads (engine.dispatch.executors.make_executor): data only,
#: so reading a config needs no dispatch code; the config accepts their union.
EXECUTOR_KEYS: dict[str, frozenset[str]] = {
    "local": frozenset({"workers", "threads_per_worker"}),
    "slurm": frozenset({"cluster", "folder", "partition", "time_min", "timeout_min", "gpus_per_node",
                        "cpus_per_task", "mem_gb", "nodes", "tasks_per_node", "account", "qos", "constraint",
                        "setup", "job_name", "unknown_grace_s"}),
    "ray": frozenset({"address", "num_cpus", "num_gpus", "threads_per_worker", "runtime_env", "workers"}),
}
EXECUTOR_OPTION_KEYS = frozenset().union(*EXECUTOR_KEYS.values())


def register_runner_kind(kind: str, keys=()) -> None:
    """Accept ``[runner] kind = "<kind>"`` with these option keys in study configs (called by
    :func:`engine.runners.registry.register_runner`)."""
    global RUNNER_KINDS
    if kind not in RUNNER_KINDS:
        RUNNER_KINDS = RUNNER_KINDS + (kind,)
    RUNNER_KEYS[kind] = frozenset(keys)


def register_executor_keys(name: str, keys=()) -> None:
    """Accept an executor's ``[runner]`` option keys (called by
    :func:`engine.dispatch.executors.register_executor`)."""
    global EXECUTOR_OPTION_KEYS
    EXECUTOR_KEYS[name] = frozenset(keys)
    EXECUTOR_OPTION_KEYS = frozenset().union(*EXECUTOR_KEYS.values())
#: The largest integer DuckDB stores (BIGINT).
_MAX_INT = 2**63 - 1
#: how to price a study whose runs cannot be priced (config validation and the strategies)
UNPRICED_FIX = ("give every [[scales]] table a cost_per_step (any unit: GPU-hours, dollars), or the study a "
                "tokens_per_step (runs are then priced 6 x model_params x tokens FLOPs); `mixplan study edit` "
                "adds either to an existing study.")
#: The smallest run.log cap (runner.log_max_bytes): a head and a tail of 512 bytes each.
MIN_LOG_BYTES = 1024
#: What each [runner] option must be, checked when a config is read (``study create``, the
#: app) so that a bad value is refused with its key then, not when ``mixplan run`` reaches it:
#: "int>=N" (a whole number, TOML's 2e3 welcome), "float>0" / "float>=0" (finite), "str",
#: "bool", "strs" (a string or a list of strings), "table" (any table), "env" (a table of
#: strings or numbers), "sizes" (a table of positive numbers), or a tuple of allowed strings.
#: Keys not listed (a table runner's ``match`` and ``max_distance``) are checked by their runner.
RUNNER_OPTION_TYPES: dict[str, str | tuple[str, ...]] = {
    "domain_sizes": "sizes", "unknown_values": ("fail", "keep"),
    # builtin
    "corpus": "str", "batch_size": "int>=1", "context": "int>=1", "lr": "float>0", "checkpoints": "int>=1",
    "eval_every": "int>=1", "eval_batches": "int>=1", "threads": "int>=1", "device": "str", "isolate": "bool",
    # command
    "cwd": "str", "env": "env", "retry_backoff_s": "float>=0", "kill_grace_s": "float>=0", "poll_s": "float>0",
    "log_max_bytes": f"int>={MIN_LOG_BYTES}",
    # mfms-sim, table, synthetic
    "path": "str", "noise": "float>=0", "checkpoint_every": "int>=1",
    "landscape_seed": "int>=0", "pivot": "float>0", "width": "float>0",
    # executors
    "workers": "int>=1", "threads_per_worker": "int>=1", "cluster": ("slurm", "local", "debug"), "folder": "str",
    "partition": "str", "time_min": "int>=1", "timeout_min": "int>=1", "gpus_per_node": "int>=0",
    "cpus_per_task": "int>=1", "mem_gb": "float>0", "nodes": "int>=1", "tasks_per_node": "int>=1",
    "account": "str", "qos": "str", "constraint": "str", "setup": "strs", "job_name": "str",
    "unknown_grace_s": "float>=0", "address": "str", "num_cpus": "float>0", "num_gpus": "float>=0",
    "runtime_env": "table",
}
TOP_KEYS = {
    "name", "domains", "eval_domains", "objective", "direction", "tokens_per_step", "scales",
    "target", "bounds", "runner", "budget", "seed", "description", "cost_unit",
}


@dataclass(frozen=True)
class Scale:
    """A model size on offer, the step counts it may be trained for, and its cost per step."""

    model_params: int
    steps: tuple[int, ...]
    cost_per_step: float | None = None


@dataclass(frozen=True)
class Target:
    """The scale whose optimum the user wants (tokens or steps; steps preferred)."""

    model_params: int
    steps: int | None = None
    tokens: float | None = None


@dataclass(frozen=True)
class TargetReach:
    """How far a target that is not among the scales on offer lies beyond them: predictions
    there are extrapolations, and the user should see by how much (see
    :meth:`StudyConfig.target_reach`)."""

    size_ratio: float  # target model_params / the largest scale's
    largest_params: int
    length_ratio: float | None  # target steps (tokens) / the longest run on offer; None: not comparable
    longest: float | None  # that longest run, in length_unit
    length_unit: str  # "steps" or "tokens"

    def describe(self, target: "Target") -> str:
        """One sentence for the CLI: the target, and the ratios to the largest scale."""
        length = (f"{target.steps:,} steps" if target.steps is not None else f"{target.tokens:,.0f} tokens")
        text = (f"the target ({target.model_params:,} params, {length}) is not among the scales: "
                f"{self.size_ratio:.3g}x the largest size on offer ({self.largest_params:,} params)")
        if self.length_ratio is not None and self.longest is not None:
            text += f" and {self.length_ratio:.3g}x the longest run on offer ({self.longest:,.0f} {self.length_unit})"
        return text + "; its optimum is an extrapolation from smaller runs."


@dataclass(frozen=True)
class RunnerConfig:
    """How a trial becomes checkpoints. ``options`` keeps kind-specific keys verbatim."""

    kind: str = "builtin"
    argv: tuple[str, ...] = ()
    timeout_s: float = 3600.0
    retries: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyConfig:
    """Everything mixplan needs to know about a study. See the README's config reference."""

    name: str
    domains: tuple[str, ...]
    eval_domains: tuple[str, ...] = ()
    objective: str = "mean_loss"
    direction: str = "minimize"
    tokens_per_step: int | None = None
    scales: tuple[Scale, ...] = ()
    target: Target | None = None
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    budget: float | None = None
    seed: int = 0
    description: str = ""
    #: what a cost_per_step counts in ("GPU-hours"); None: "cost units", or FLOPs where no
    #: scale has a cost_per_step (engine.costs.cost_unit resolves it)
    cost_unit: str | None = None

    # ---- derived -------------------------------------------------------------------------
    def bound(self, domain: str) -> tuple[float, float]:
        """(low, high) weight bounds of a domain (``default`` applies where none is given)."""
        return self.bounds.get(domain, self.bounds.get("default", (0.0, 1.0)))

    def bounds_array(self) -> list[tuple[float, float]]:
        """Bounds in domain order, for the optimisers."""
        return [self.bound(d) for d in self.domains]

    def tokens_for(self, steps: float | None) -> float | None:
        """Tokens seen after ``steps`` (needs ``tokens_per_step``)."""
        if steps is None or self.tokens_per_step is None:
            return None
        return float(steps) * self.tokens_per_step

    def steps_for(self, tokens: float | None) -> float | None:
        """Steps needed for ``tokens`` (needs ``tokens_per_step``)."""
        if tokens is None or self.tokens_per_step is None:
            return None
        return float(tokens) / self.tokens_per_step

    def scale_for(self, model_params: int) -> Scale | None:
        """The offered scale of exactly this size, if any."""
        for s in self.scales:
            if s.model_params == int(model_params):
                return s
        return None

    def fidelities(self) -> list[tuple[int, int]]:
        """Every (model_params, steps) on offer, cheapest first."""
        pairs = [(s.model_params, st) for s in self.scales for st in s.steps]
        return sorted(pairs, key=lambda p: self.cost(p[0], steps=p[1]) or 0.0)

    def cost(self, model_params: int, *, steps: float | None = None, tokens: float | None = None) -> float | None:
        """Cost of a run, the one pricing rule of the product (strategies, the store, autopilot's
        budget): ``cost_per_step * steps`` where the scale has one, else ``6 * model_params *
        tokens`` FLOPs; None when neither can be computed (a run at a size not on offer, with no
        tokens_per_step to count its tokens). A runner's own reported cost overrides it."""
        scale = self.scale_for(model_params)
        if steps is None and tokens is not None:
            steps = self.steps_for(tokens)
        if scale is not None and scale.cost_per_step is not None and steps is not None:
            return float(scale.cost_per_step) * float(steps)
        if tokens is None:
            tokens = self.tokens_for(steps)
        if tokens is None:
            return None
        return 6.0 * float(model_params) * float(tokens)

    def require_cost(self, model_params: int, *, steps: float | None = None, tokens: float | None = None) -> float:
        """:meth:`cost`, or a ConfigError saying how to price the study where it cannot be
        computed (what the strategies need: EI per unit cost has no meaning without a cost)."""
        c = self.cost(model_params, steps=steps, tokens=tokens)
        if c is None or not math.isfinite(c):
            raise ConfigError(f"study '{self.name}' cannot price a run of {model_params:,} parameters for "
                              f"{steps if steps is not None else tokens} {'steps' if steps is not None else 'tokens'}: "
                              "no [[scales]] entry of that size gives a cost_per_step, and the study gives no "
                              "tokens_per_step.", fix=UNPRICED_FIX)
        return float(c)

    def target_reach(self) -> TargetReach | None:
        """How far the target lies beyond the scales on offer, or None where it is one of them
        (its size is a scale and its steps one of that scale's) or there are no scales. A
        target beyond the scales is allowed (extrapolation is the point), but is worth saying."""
        t = self.target
        if t is None or not self.scales:
            return None
        offered = self.scale_for(t.model_params)
        t_steps = t.steps if t.steps is not None else self.steps_for(t.tokens)
        if offered is not None and t_steps is not None and t_steps in offered.steps:
            return None
        largest = max(self.scales, key=lambda s: s.model_params)
        longest_steps = max(st for s in self.scales for st in s.steps)
        if t.steps is not None:
            ratio, longest, unit = t.steps / longest_steps, float(longest_steps), "steps"
        elif self.tokens_per_step is not None and t.tokens is not None:
            longest = float(longest_steps) * self.tokens_per_step
            ratio, unit = t.tokens / longest, "tokens"
        else:
            ratio, longest, unit = None, None, "tokens"
        return TargetReach(t.model_params / largest.model_params, largest.model_params, ratio, longest, unit)

    def direction_for(self, objective: str | None) -> str:
        """Which way to optimise ``objective`` in this study (see :func:`objective_direction`)."""
        return objective_direction(objective, self)

    @property
    def objective_column(self) -> str:
        """The run-table column the objective reads (``mean_loss`` is computed, not stored)."""
        return self.objective

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON/TOML-friendly dict that :func:`config_from_dict` reads back identically."""
        d = asdict(self)
        d["domains"] = list(self.domains)
        d["eval_domains"] = list(self.eval_domains)
        d["scales"] = [
            {k: (list(v) if k == "steps" else v) for k, v in asdict(s).items() if v is not None}
            for s in self.scales
        ]
        d["target"] = (
            {k: v for k, v in asdict(self.target).items() if v is not None} if self.target else None
        )
        d["bounds"] = {k: list(v) for k, v in self.bounds.items()}
        r = self.runner
        d["runner"] = {"kind": r.kind, "argv": list(r.argv), "timeout_s": r.timeout_s,
                       "retries": r.retries, **r.options}
        return {k: v for k, v in d.items() if v is not None}


def objective_direction(objective: str | None, config: StudyConfig | None = None) -> str:
    """``"minimize"`` or ``"maximize"`` for ``objective`` in a study: the study's own
    ``direction`` when ``objective`` is the study's objective (or None); otherwise ``maximize``
    for ``metric_*`` (higher is better, DESIGN contract 2) and ``minimize`` for losses. The one
    place this is decided: the app, the CLI and the plots all ask here."""
    if config is not None and (objective is None or objective == config.objective):
        return config.direction
    if objective is None:
        return "minimize"
    return "maximize" if str(objective).startswith("metric_") else "minimize"


def read_toml(path: str | Path, *, fix: str = "see the config reference in the README.") -> dict[str, Any]:
    """A TOML file as a dict, or a ConfigError naming the file (missing, not TOML: ``fix``, not
    UTF-8): one reader for study configs and study-edit patches, so both fail the same way."""
    p = Path(path)
    if not p.exists():
        raise ConfigError("file not found.", file=str(p), fix="check the path given to --config.")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc}).", file=str(p), fix=fix) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("not a UTF-8 text file.", file=str(p)) from exc


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study config file."""
    return config_from_dict(read_toml(path), source=str(Path(path)))


def parse_config(text: str, source: str = "<config>") -> StudyConfig:
    """Validate a config given as TOML text (the app's upload)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc}).", file=source) from exc
    return config_from_dict(raw, source=source)


def check_study_name(name: Any, label: str = "the study name") -> str:
    """``name`` if it is a usable study name, else a ValidationError that blames ``label``
    (``--study`` on the command line), not a config or a file. Study names become folder names
    (runs, spool), so they are letters, digits, '_', '-', '.'."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        from engine.errors import ValidationError

        raise ValidationError(f"{label} {name!r} is not a usable study name: use letters, digits, '_', '-' and '.', "
                              "starting with a letter or digit.", fix=f"e.g. {label} my-study.")
    return name


def _err(source: str, key: str, msg: str, fix: str | None = None) -> ConfigError:
    return ConfigError(f"key '{key}': {msg}", file=source, fix=fix)


def _positive_int(v: Any, source: str, key: str) -> int:
    """A whole number > 0 (TOML's 1e9 and 20_000_000 both welcome). inf and nan are checked
    before ``int()``, which would raise OverflowError / ValueError at the user."""
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v))
            or v != int(v) or v <= 0 or v > _MAX_INT):
        raise _err(source, key, f"expected a positive integer, got {v!r}.",
                   fix=f"give a whole number between 1 and {_MAX_INT:.3g}, e.g. 20_000_000 or 2e7.")
    return int(v)


def _positive_float(v: Any, source: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _err(source, key, f"expected a positive number, got {v!r}.", fix="give a finite number > 0.")
    return float(v)


def _unknown(keys: set[str], allowed: set[str], source: str, where: str) -> None:
    for k in sorted(keys - allowed):
        close = difflib.get_close_matches(k, sorted(allowed), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(sorted(allowed))}."
        raise _err(source, f"{where}{k}", "unknown key.", fix=hint)


def _check_runner_keys(r: dict[str, Any], kind: str, source: str) -> None:
    """Every [runner] key must be read by the runner of this kind or by an executor."""
    allowed = RUNNER_COMMON_KEYS | RUNNER_KEYS[kind] | EXECUTOR_OPTION_KEYS
    for k in sorted(k for k in r if k not in allowed and not k.startswith("slurm_")):
        owners = [other for other, keys in RUNNER_KEYS.items() if k in keys]
        close = difflib.get_close_matches(k, sorted(allowed), n=1)
        if owners:
            hint = (f"'{k}' is an option of the {' and '.join(owners)} runner{'s' if len(owners) > 1 else ''}, "
                    f"not of {kind}.")
        elif close:
            hint = f"did you mean '{close[0]}'?"
        else:
            hint = (f"{kind} runner keys: {', '.join(sorted(RUNNER_COMMON_KEYS | RUNNER_KEYS[kind]))}; executor "
                    "keys (workers, partition, mem_gb, address, ..., slurm_*) are allowed for every runner.")
        raise _err(source, f"runner.{k}", f"unknown key for a {kind} runner.", fix=hint)


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _check_runner_values(r: dict[str, Any], source: str) -> None:
    """Every [runner] option of :data:`RUNNER_OPTION_TYPES` has a value of its kind and range."""
    for k, v in r.items():
        rule = RUNNER_OPTION_TYPES.get(k)
        key = f"runner.{k}"
        if rule is None:
            continue
        if isinstance(rule, tuple):
            if v not in rule:
                raise _err(source, key, f"got {v!r}.", fix=f"use one of {', '.join(repr(x) for x in rule)}.")
        elif rule.startswith("int>="):
            low = int(rule[5:])
            if not _number(v) or v != int(v) or not low <= v <= _MAX_INT:
                raise _err(source, key, f"expected a whole number >= {low}, got {v!r}.",
                           fix=f"e.g. {k} = {max(low, 1)}.")
        elif rule in ("float>0", "float>=0"):
            if not _number(v) or v < 0 or (rule == "float>0" and v == 0):
                raise _err(source, key, f"expected a finite number {rule[5:]}, got {v!r}.",
                           fix=f"give a number {rule[5:]} (in seconds for *_s keys).")
        elif rule == "str":
            if not isinstance(v, str):
                raise _err(source, key, f"expected a string, got {v!r}.", fix=f'e.g. {k} = "...".')
        elif rule == "bool":
            if not isinstance(v, bool):
                raise _err(source, key, f"expected true or false, got {v!r}.")
        elif rule == "strs":
            if not (isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))):
                raise _err(source, key, f"expected a string or a list of strings, got {v!r}.")
        elif rule == "table":
            if not isinstance(v, dict):
                raise _err(source, key, f"expected a table, got {v!r}.")
        elif rule == "env":
            if not isinstance(v, dict) or any(not isinstance(x, str) and not _number(x) for x in v.values()):
                raise _err(source, key, f"expected a table of NAME = \"value\", got {v!r}.")
        elif rule == "sizes":
            if not isinstance(v, dict) or any(not _number(x) or x <= 0 for x in v.values()):
                raise _err(source, key, f"expected a table of domain = tokens (numbers > 0), got {v!r}.")


def config_from_dict(raw: dict[str, Any], source: str = "<config>", *, check_runner_keys: bool = True) -> StudyConfig:
    """Validate a parsed config (TOML or stored JSON) into a :class:`StudyConfig`.

    ``check_runner_keys=False`` is for configs already stored in a database: those were saved
    before [runner] keys were checked, and a study must stay readable (a new config, from a
    file or the app, is always checked). A stored config is also taken with the
    tokens_per_step it has: :meth:`StudyConfig.to_dict` writes the default runner table out,
    so a stored ``kind = "builtin"`` does not mean the user named the trainer (an imported
    study would otherwise read back with batch_size x context tokens a step its runs never had)."""
    if not isinstance(raw, dict):
        raise ConfigError("expected a table of keys.", file=source)
    _unknown(set(raw), TOP_KEYS, source, "")

    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _err(source, "name", f"expected a study name of letters, digits, '_', '-', '.', got {name!r}.",
                   fix='add a line like name = "my-study".')

    domains = raw.get("domains")
    if not isinstance(domains, list) or len(domains) < 2:
        raise _err(source, "domains", f"expected a list of at least two domain names, got {domains!r}.",
                   fix='e.g. domains = ["web", "code", "books"].')
    for d in domains:
        if not isinstance(d, str) or not DOMAIN_RE.match(d):
            raise _err(source, "domains", f"bad domain name {d!r}: use letters, digits, '_', '-', '.'.")
    if len(set(domains)) != len(domains):
        dup = sorted({d for d in domains if domains.count(d) > 1})
        raise _err(source, "domains", f"repeated domain(s): {', '.join(dup)}.")

    eval_domains = raw.get("eval_domains", [])
    if not isinstance(eval_domains, list) or any(
        not isinstance(d, str) or not DOMAIN_RE.match(d) for d in eval_domains
    ):
        raise _err(source, "eval_domains", "expected a list of domain names.")
    if len(set(eval_domains)) != len(eval_domains):
        dup = sorted({d for d in eval_domains if eval_domains.count(d) > 1})
        raise _err(source, "eval_domains", f"repeated domain(s): {', '.join(dup)}.", fix="list each domain once.")

    objective = raw.get("objective", "mean_loss")
    if not isinstance(objective, str) or not (
        objective == "mean_loss" or objective.startswith("loss_") or objective.startswith("metric_")
    ):
        raise _err(source, "objective", f"got {objective!r}.",
                   fix="use 'mean_loss', 'loss_<domain>' or 'metric_<name>'.")
    if objective != "mean_loss":
        prefix, rest = objective.split("_", 1)
        if not DOMAIN_RE.match(rest):
            what = "domain" if prefix == "loss" else "name"
            raise _err(source, "objective", f"{objective!r} has no {what} after '{prefix}_'.",
                       fix=f"use '{prefix}_<{what}>' ({what}: letters, digits, '_', '-', '.'), or 'mean_loss'.")
    loss_domains = list(eval_domains) or list(domains)
    if objective.startswith("loss_") and eval_domains and objective[5:] not in loss_domains:
        raise _err(source, "objective", f"'{objective}' names no evaluation domain.",
                   fix=f"evaluation domains are: {', '.join(loss_domains)}.")

    direction = raw.get("direction", "maximize" if objective.startswith("metric_") else "minimize")
    if direction not in ("minimize", "maximize"):
        raise _err(source, "direction", f"got {direction!r}.", fix="use 'minimize' or 'maximize'.")

    tps = raw.get("tokens_per_step")
    tokens_per_step = None if tps is None else _positive_int(tps, source, "tokens_per_step")

    scales_raw = raw.get("scales", [])
    if not isinstance(scales_raw, list):
        raise _err(source, "scales", "expected [[scales]] tables.")
    scales: list[Scale] = []
    for i, s in enumerate(scales_raw):
        where = f"scales[{i}]."
        if not isinstance(s, dict):
            raise _err(source, f"scales[{i}]", "expected a table.")
        _unknown(set(s), {"model_params", "steps", "cost_per_step"}, source, where)
        if "model_params" not in s:
            raise _err(source, where + "model_params", "missing.", fix="give the model size in parameters.")
        mp = _positive_int(s["model_params"], source, where + "model_params")
        steps = s.get("steps")
        if not isinstance(steps, list) or not steps:
            raise _err(source, where + "steps", f"expected a non-empty list of step counts, got {steps!r}.")
        st = tuple(sorted({_positive_int(x, source, where + "steps") for x in steps}))
        cps = s.get("cost_per_step")
        cps = None if cps is None else _positive_float(cps, source, where + "cost_per_step")
        if any(sc.model_params == mp for sc in scales):
            raise _err(source, where + "model_params", f"size {mp} is listed twice.", fix="merge the two [[scales]].")
        scales.append(Scale(mp, st, cps))
    scales.sort(key=lambda s: s.model_params)
    if check_runner_keys and tokens_per_step is None and any(sc.cost_per_step is None for sc in scales) \
            and not (isinstance(r_raw := raw.get("runner"), dict) and r_raw.get("kind") == "builtin"):
        # a run offered here could not be priced: strategies weigh information per unit of cost
        # and autopilot spends a budget, so refuse now rather than propose unpriced runs (the
        # built-in trainer's studies get tokens_per_step from it below)
        i = next(i for i, sc in enumerate(scales_raw) if isinstance(sc, dict) and sc.get("cost_per_step") is None)
        raise _err(source, f"scales[{i}].cost_per_step",
                   f"scale of {scales_raw[i].get('model_params')} parameters has no cost_per_step and the study "
                   "gives no tokens_per_step, so its runs cannot be priced.", fix=UNPRICED_FIX)

    target = None
    t = raw.get("target")
    if t is not None:
        if not isinstance(t, dict):
            raise _err(source, "target", "expected a table.")
        _unknown(set(t), {"model_params", "steps", "tokens"}, source, "target.")
        if "model_params" not in t:
            raise _err(source, "target.model_params", "missing.")
        tmp = _positive_int(t["model_params"], source, "target.model_params")
        tst = None if t.get("steps") is None else _positive_int(t["steps"], source, "target.steps")
        ttk = None if t.get("tokens") is None else _positive_float(t["tokens"], source, "target.tokens")
        if tst is None and ttk is None:
            raise _err(source, "target", "give steps or tokens.", fix="add steps = N under [target].")
        target = Target(tmp, tst, ttk)
    elif scales:
        big = scales[-1]
        target = Target(big.model_params, big.steps[-1], None)

    bounds: dict[str, tuple[float, float]] = {}
    b = raw.get("bounds", {})
    if not isinstance(b, dict):
        raise _err(source, "bounds", "expected a table of domain = [low, high].")
    _unknown(set(b), set(domains) | {"default"}, source, "bounds.")
    for k, v in b.items():
        if (not isinstance(v, list) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)):
            raise _err(source, f"bounds.{k}", f"expected [low, high], got {v!r}.")
        lo, hi = float(v[0]), float(v[1])
        if not (0.0 <= lo <= hi <= 1.0):
            raise _err(source, f"bounds.{k}", f"need 0 <= low <= high <= 1, got [{lo}, {hi}].")
        bounds[k] = (lo, hi)
    default = bounds.get("default", (0.0, 1.0))
    lows = sum(bounds.get(d, default)[0] for d in domains)
    highs = sum(bounds.get(d, default)[1] for d in domains)
    if lows > 1.0 + 1e-9 or highs < 1.0 - 1e-9:
        raise _err(source, "bounds", f"no mixture fits: lower bounds sum to {lows:g}, upper to {highs:g}.",
                   fix="lower bounds must sum to <= 1 and upper bounds to >= 1.")

    r = raw.get("runner", {})
    if not isinstance(r, dict):
        raise _err(source, "runner", "expected a table.")
    kind = r.get("kind", "builtin")
    if kind not in RUNNER_KINDS:
        raise _err(source, "runner.kind", f"got {kind!r}.", fix=f"use one of {', '.join(RUNNER_KINDS)}.")
    argv = r.get("argv", [])
    if not isinstance(argv, list) or any(not isinstance(a, str) for a in argv):
        raise _err(source, "runner.argv", "expected a list of strings (an argv, never a shell string).")
    if kind == "command" and not argv:
        raise _err(source, "runner.argv", "a command runner needs an argv.",
                   fix='e.g. argv = ["python3", "train.py", "--weights", "{weights_json}", "--out", "{out_dir}"].')
    if kind == "command":
        from string import Formatter

        allowed = {"run_id", "weights_json", "model_params", "tokens", "steps", "out_dir", "seed"}
        for a in argv:
            try:
                names = {f for _, f, _, _ in Formatter().parse(a) if f is not None}
            except ValueError as exc:
                raise _err(source, "runner.argv", f"bad placeholder in {a!r} ({exc}).") from exc
            bad = names - allowed
            if bad:
                raise _err(source, "runner.argv", f"unknown placeholder(s) {sorted(bad)} in {a!r}.",
                           fix=f"placeholders are {{{'}, {'.join(sorted(allowed))}}}.")
    if check_runner_keys:
        _check_runner_keys(r, kind, source)
        _check_runner_values(r, source)
    timeout = _positive_float(r.get("timeout_s", 3600), source, "runner.timeout_s")
    retries = r.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise _err(source, "runner.retries", f"expected an integer >= 0, got {retries!r}.")
    options = {k: v for k, v in r.items() if k not in {"kind", "argv", "timeout_s", "retries"}}
    runner = RunnerConfig(kind, tuple(argv), timeout, retries, options)
    if r.get("kind") == "builtin" and tokens_per_step is None and check_runner_keys:
        # a study that names the built-in trainer: it takes batch_size x context tokens a step,
        # so without a tokens_per_step of its own the study uses that, and proposals are priced
        # (6 x params x tokens) in the unit of the results the trainer reports. (A study with
        # no [runner], e.g. one made by an import, keeps tokens_per_step unset.)
        tokens_per_step = (_positive_int(options.get("batch_size", 16), source, "runner.batch_size")
                           * _positive_int(options.get("context", 128), source, "runner.context"))

    budget = raw.get("budget")
    budget = None if budget is None else _positive_float(budget, source, "budget")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_INT:
        raise _err(source, "seed", f"expected an integer >= 0, got {seed!r}.",
                   fix="give a seed like 0 or 1234 (numpy and torch take no negative seeds).")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _err(source, "description", "expected a string.")
    cost_unit = raw.get("cost_unit")
    if cost_unit is not None and (not isinstance(cost_unit, str) or not cost_unit.strip()):
        raise _err(source, "cost_unit", f"expected a unit name, got {cost_unit!r}.",
                   fix='e.g. cost_unit = "GPU-hours" (what cost_per_step counts in).')

    return StudyConfig(
        name=name, domains=tuple(domains), eval_domains=tuple(eval_domains), objective=objective,
        direction=direction, tokens_per_step=tokens_per_step, scales=tuple(scales), target=target,
        bounds=bounds, runner=runner, budget=budget, seed=seed, description=description,
        cost_unit=None if cost_unit is None else cost_unit.strip(),
    )
