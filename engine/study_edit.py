"""Changing an existing study's config with a patch (``mixplan study edit``).

Why: a study made by ``mixplan import`` has no scales, target or runner, and ``study create``
cannot be run again on it; without an edit it is a dead end. A patch is a TOML file holding
only what changes::

    [[scales]]                 # replaces the whole scales list
    model_params = 100_000
    steps = [250, 500]

    [target]                   # replaces the target
    model_params = 100_000
    steps = 500

Top-level keys (``objective``, ``direction``, ``budget``, ``tokens_per_step``, ``description``,
``seed``, ``cost_unit``) replace theirs; ``[[scales]]``, ``[target]`` and ``[bounds]`` replace
the whole table; ``[runner]`` is merged into the current runner table when it keeps the runner
kind, and replaces it when it names another kind. The patched config goes through the same
validation as ``study create`` (:func:`engine.config.config_from_dict`), so a patch can never
store a config that ``study create`` would refuse.

A patch is refused where the study's stored results contradict it (:func:`check_against_results`):
a domain list that no longer matches the runs' weights, an objective the runs never measured,
a ``tokens_per_step`` that would reinterpret stored steps as other token counts, or a runner
swap under trials that are queued or running. The store applies the edit and these checks in
one transaction and records the changes (old -> new) as a ``config_edited`` event.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from engine.config import StudyConfig, _check_runner_keys, config_from_dict, read_toml
from engine.errors import ConfigError, ValidationError

#: Keys a patch may not change once the study has trials (the study's identity).
FIXED_KEYS = ("name", "domains")
#: Tables a patch replaces whole ([runner] is merged, see the module docstring).
REPLACED_TABLES = ("scales", "target", "bounds")


@dataclass(frozen=True)
class Change:
    """One changed config key: ``runner.timeout_s``, ``scales``, ``target`` ..."""

    key: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "old": self.old, "new": self.new}

    def describe(self) -> str:
        return f"{self.key}: {_show(self.old)} -> {_show(self.new)}"


@dataclass(frozen=True)
class StudyFacts:
    """What the store holds for a study, as far as a config edit can contradict it."""

    trials: int = 0
    #: trials by state
    states: dict[str, int] = field(default_factory=dict)
    checkpoints: int = 0
    #: loss_<domain> / metric_<name> columns that have at least one stored value
    measured: tuple[str, ...] = ()
    #: checkpoints or trials that carry a step count
    with_steps: int = 0
    #: (smallest, largest) tokens / steps over checkpoints that carry both; None if none
    tokens_per_step_seen: tuple[float, float] | None = None


@dataclass(frozen=True)
class ConfigEdit:
    """A patch applied to a config: the new config, what changed, and notes worth reading."""

    old: StudyConfig
    new: StudyConfig
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = ()


def _show(v: Any) -> str:
    if v is None:
        return "(none)"
    return json.dumps(v, default=str)


def read_patch(path: str | Path) -> dict[str, Any]:
    """The patch file as a dict (TOML), or a ConfigError naming the file."""
    p = Path(path)
    raw = read_toml(p, fix="a patch holds only the keys and tables to change; see the README's study edit.")
    if not raw:
        raise ConfigError("the patch is empty: nothing to change.", file=str(p),
                          fix="put the tables or keys to change in it, e.g. [target] with model_params and steps.")
    return raw


def apply_patch(old: StudyConfig, patch: dict[str, Any], source: str = "<patch>") -> StudyConfig:
    """``old`` with ``patch`` applied (see the module docstring), validated like ``study create``."""
    if not isinstance(patch, dict):
        raise ConfigError("expected a table of keys.", file=source)
    name = patch.get("name", old.name)
    if name != old.name:
        raise ConfigError(f"key 'name': a study cannot be renamed (this is study '{old.name}', the patch says "
                          f"{name!r}).", file=source, fix="drop the name line from the patch.")
    merged = old.to_dict()
    for key, value in patch.items():
        if key == "runner" and isinstance(value, dict) and value.get("kind", old.runner.kind) == old.runner.kind:
            merged["runner"] = {**merged.get("runner", {}), **value}
        else:
            merged[key] = value
    if "objective" in patch and "direction" not in patch:
        # the direction follows a new objective (a metric is maximised) unless the patch says
        merged.pop("direction", None)
    runner = patch.get("runner")
    names_kind = isinstance(runner, dict) and "kind" in runner
    if isinstance(runner, dict) and not names_kind:
        # new [runner] keys are checked like a new config's; the table is checked whole (an old
        # study may hold keys stored before keys were checked: those the patch did not add pass)
        _check_runner_keys({k: v for k, v in merged["runner"].items() if k in runner}, old.runner.kind, source)
    # a patch that names a runner kind is read like a new config (a builtin runner brings its
    # tokens_per_step); otherwise the stored config's values stand
    return config_from_dict(merged, source=source, check_runner_keys=names_kind)


def diff(old: StudyConfig, new: StudyConfig) -> list[Change]:
    """The keys whose values differ (runner keys one by one)."""
    a, b = old.to_dict(), new.to_dict()
    out: list[Change] = []
    for key in list(dict.fromkeys([*a, *b])):
        if key == "runner":
            ra, rb = a.get("runner", {}), b.get("runner", {})
            for k in list(dict.fromkeys([*ra, *rb])):
                if ra.get(k) != rb.get(k):
                    out.append(Change(f"runner.{k}", ra.get(k), rb.get(k)))
        elif a.get(key) != b.get(key):
            out.append(Change(key, a.get(key), b.get(key)))
    return out


def check_against_results(old: StudyConfig, new: StudyConfig, facts: StudyFacts, source: str,
                          patch_keys: frozenset[str] = frozenset()) -> list[str]:
    """Refuse (ValidationError) an edit the study's stored trials and results contradict;
    returns notes about changes that are allowed but worth knowing. ``patch_keys``: the keys
    the patch gave (for messages about values derived from others)."""
    notes: list[str] = []
    if tuple(new.domains) != tuple(old.domains) and facts.trials:
        raise ValidationError(
            f"key 'domains': study '{old.name}' has {facts.trials} trial(s) whose mixtures are over "
            f"{', '.join(old.domains)}; a new domain list ({', '.join(new.domains)}) would no longer match "
            "their weights.", file=source,
            fix="keep the domains, or put the new domains in a new study (`mixplan study create --config FILE`).")
    if new.objective != old.objective and facts.checkpoints:
        measured = set(facts.measured)
        losses = sorted(c for c in measured if c.startswith("loss_"))
        ok = bool(losses) if new.objective == "mean_loss" else new.objective in measured
        if not ok:
            raise ValidationError(
                f"key 'objective': the study's {facts.checkpoints} stored checkpoint(s) never measured "
                f"'{new.objective}', so no run could be judged by it.", file=source,
                fix="choose one they measured: "
                    f"{', '.join(['mean_loss'] * bool(losses) + sorted(measured)) or 'none'}.")
    if tuple(new.eval_domains) != tuple(old.eval_domains) and facts.checkpoints:
        have = sorted(c[5:] for c in facts.measured if c.startswith("loss_"))
        if set(new.eval_domains) != set(have):
            raise ValidationError(
                f"key 'eval_domains': the stored checkpoints measured losses on {', '.join(have)}; "
                f"{', '.join(new.eval_domains) or 'an empty list'} would not match them.", file=source,
                fix="drop eval_domains from the patch (the evaluation domains are learnt from the results).")
    if new.tokens_per_step != old.tokens_per_step:
        seen = facts.tokens_per_step_seen
        if old.tokens_per_step is not None and facts.with_steps:
            raise ValidationError(
                f"key 'tokens_per_step': {facts.with_steps} stored checkpoint(s) or trial(s) count steps of "
                f"{old.tokens_per_step} tokens; {new.tokens_per_step} would reinterpret every stored step as "
                "another number of tokens.", file=source,
                fix="keep tokens_per_step, or start a new study for runs of another batch size.")
        # tokens_per_step is a whole number: a table's 65536 tokens at 100 steps fits 655
        if seen is not None and new.tokens_per_step is not None and not all(
                abs(r - new.tokens_per_step) < 1.0 for r in seen):
            got = f"{seen[0]:g}" if seen[0] == seen[1] else f"{seen[0]:g} to {seen[1]:g}"
            raise ValidationError(
                f"key 'tokens_per_step': the stored checkpoints record tokens / steps = {got}, not "
                f"{new.tokens_per_step}" + (" (a builtin [runner] takes batch_size x context when the config gives "
                                            "no tokens_per_step)" if "tokens_per_step" not in patch_keys else "")
                + ".", file=source, fix=f"set tokens_per_step = {round(seen[0])} in the patch.")
    if new.runner.kind != old.runner.kind:
        busy = {s: n for s, n in facts.states.items() if s in ("queued", "running") and n}
        if busy:
            raise ValidationError(
                f"key 'runner.kind': {', '.join(f'{n} trial(s) {s}' for s, n in busy.items())} under the "
                f"{old.runner.kind} runner; swapping the runner now would leave them to the wrong one.", file=source,
                fix="wait for them to finish (or cancel them), then edit the runner.")
    if new.target is not None and new.scales and new.scale_for(new.target.model_params) is None:
        notes.append(f"the target size {new.target.model_params:,} is not among the scales on offer; "
                     "strategies predict it but never run it.")
    if new.budget is not None and facts.trials and new.budget != old.budget:
        notes.append("autopilot counts its own spend from 0 each time it starts; the budget is what one "
                     "autopilot session may spend.")
    return notes


def plan_edit(old: StudyConfig, patch: dict[str, Any], facts: StudyFacts, source: str = "<patch>") -> ConfigEdit:
    """Apply ``patch`` to ``old``, check it against the stored results, and list the changes."""
    new = apply_patch(old, patch, source)
    notes = check_against_results(old, new, facts, source, frozenset(patch))
    return ConfigEdit(old, new, tuple(diff(old, new)), tuple(notes))


# ---------------------------------------------------------------------------------------------
# The way out of a study that lacks scales or a target (imported studies)
# ---------------------------------------------------------------------------------------------
def example_patch(config: StudyConfig, runs: pd.DataFrame | None = None,
                  need: tuple[str, ...] = ("scales", "target")) -> str:
    """A patch giving ``config`` what it lacks of ``need`` (``scales``, ``target``), built
    from the study's own runs where it has some (their sizes and step counts; the largest as
    the target)."""
    lines: list[str] = []
    sizes: dict[int, list[int]] = {}
    if runs is not None and len(runs) and "steps" in runs.columns and runs["steps"].notna().any():
        last = runs.dropna(subset=["steps"]).groupby("run_id").agg({"model_params": "first", "steps": "max"})
        for mp, st in zip(last["model_params"], last["steps"]):
            sizes.setdefault(int(mp), []).append(int(st))
    if not sizes and runs is not None and len(runs) and "tokens" in runs.columns and runs["tokens"].notna().any():
        lines += ["tokens_per_step = 1048576        # tokens per training step of your runs (batch x context)"]
        last = runs.groupby("run_id").agg({"model_params": "first", "tokens": "max"})
        for mp, tok in zip(last["model_params"], last["tokens"]):
            sizes.setdefault(int(mp), []).append(max(1, int(round(float(tok) / 1048576))))
    if not sizes:
        sizes = {100_000: [250, 500]}
    elif config.tokens_per_step is None and runs is not None and {"steps", "tokens"} <= set(runs.columns):
        both = runs.dropna(subset=["steps", "tokens"])
        ratio = (both["tokens"].astype(float) / both["steps"].astype(float)) if len(both) else None
        if ratio is not None and len(ratio) and float(ratio.max() - ratio.min()) < 1.0:
            # the runs' own tokens per step: proposals then get token counts and a FLOPs cost
            lines += [f"tokens_per_step = {round(float(ratio.iloc[0]))}"]
    if ("scales" in need and not config.scales and config.tokens_per_step is None
            and not any(line.startswith("tokens_per_step") for line in lines)):
        # scales must be priced (engine.config: cost_per_step per scale, or tokens_per_step)
        lines += ["tokens_per_step = 1048576        # tokens per training step of your runs (batch x context); "
                  "or give each scale a cost_per_step"]
    if "scales" in need and not config.scales:
        for mp in sorted(sizes):
            steps = sorted(set(sizes[mp]))[-5:]
            lines += ["[[scales]]", f"model_params = {mp}", f"steps = {steps}"]
    if "target" in need and config.target is None:
        big = max(sizes)
        lines += ["[target]", f"model_params = {big}", f"steps = {max(sizes[big])}"]
    return "\n".join(lines)


def needs_edit_message(config: StudyConfig, runs: pd.DataFrame | None, what: str,
                       need: tuple[str, ...] = ("scales", "target")) -> str:
    """The fix for a study that lacks scales or a target (``need``): the ``study edit``
    command and an example patch (``what`` says what the user was trying to do)."""
    missing = [table for key, table, absent in (("scales", "[[scales]]", not config.scales),
                                                 ("target", "[target]", config.target is None))
               if key in need and absent]
    return (f"{what} needs {' and '.join(missing) or 'scales and a target'} in the study's config. Write "
            f"{'them' if len(missing) > 1 else 'it'} to a file, e.g. patch.toml:\n"
            f"{example_patch(config, runs, need)}\nthen run `mixplan study edit --study {config.name} "
            "--config patch.toml` (add a [runner] table there too to run trials; see the README).")
