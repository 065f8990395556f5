"""`mixplan study create|list|show`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import DEFAULT_DB, DbOption, JsonFlag, PlainTable, StudyOption, console, esc, open_store, print_json

study_app = typer.Typer(help="Create and inspect studies.", no_args_is_help=True)


@study_app.command("create")
def create(
    config: Annotated[Path, typer.Option("--config", "-c", help="Study config (TOML); see the README's reference.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Create a study from a TOML config (validated: every problem names the key and the fix)."""
    from engine.config import load_config

    cfg = load_config(config)
    open_store(db, create=True).create_study(cfg, actor="cli")
    console.print(f"created study [bold]{esc(cfg.name)}[/] with domains {esc(', '.join(cfg.domains))} in {esc(db)}")
    reach = cfg.target_reach()
    if reach is not None and cfg.target is not None:
        console.print(f"note: {esc(reach.describe(cfg.target))}", highlight=False)


@study_app.command("edit")
def edit(
    study: StudyOption,
    config: Annotated[Path, typer.Option("--config", "-c", help="Patch (TOML) holding only the keys and tables to "
                                                                "change: [[scales]], [target], [bounds], [runner], "
                                                                "objective, budget, ...")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the patch and print the changes; write "
                                                            "nothing.")] = False,
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """Change an existing study's config with a patch: validated like `study create` and against
    the study's stored runs, logged (old -> new) in its event log. [[scales]], [target] and
    [bounds] replace the whole table; [runner] is merged unless it names another kind."""
    from engine.study_edit import read_patch

    patch = read_patch(config)
    edit = open_store(db).edit_config(study, patch, source=str(config), actor="cli", dry_run=dry_run)
    if as_json:
        print_json({"study": study, "dry_run": dry_run, "changes": [c.to_dict() for c in edit.changes],
                    "notes": list(edit.notes), "config": edit.new.to_dict()})
        return
    if not edit.changes:
        console.print(f"nothing to change: study {study} already has what {config} says.", markup=False)
        return
    head = "would change" if dry_run else "changed"
    console.print(f"{head} study {study} ({len(edit.changes)} change(s)):", markup=False)
    for c in edit.changes:
        console.print(f"  {c.describe()}", markup=False, highlight=False)
    for n in edit.notes:
        console.print(f"note: {n}", markup=False)
    if dry_run:
        console.print("nothing written; run it again without --dry-run to apply.", markup=False)


@study_app.command("list")
def list_(db: DbOption = DEFAULT_DB, as_json: JsonFlag = False) -> None:
    """List the studies: domains, runs, checkpoints, runner (and validation runs, counted apart:
    held-out runs no model fits on)."""
    studies = open_store(db).list_studies()
    if as_json:
        print_json([{"name": s.name, "domains": s.domains, "runs": s.runs, "checkpoints": s.checkpoints,
                     "runner": s.runner, "validation_runs": s.validation_runs} for s in studies])
        return
    table = PlainTable("study", "domains", "runs", "checkpoints", "validation runs", "runner")
    for s in studies:
        table.add_row(s.name, ", ".join(s.domains), str(s.runs), str(s.checkpoints), str(s.validation_runs),
                      s.runner)
    console.print(table if studies else f"no study in {esc(db)} yet: `mixplan study create --config FILE`.")


@study_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """Show a study's config (and how far its target lies beyond the scales), its trials by state,
    each failed trial's reason (ending with its log's tail) and the latest events."""
    store = open_store(db)
    cfg = store.get_config(name)
    trials = store.trials_frame(name)
    counts = trials["state"].value_counts().to_dict() if len(trials) else {}
    spent = float(trials.loc[trials["state"] == "done", "cost"].fillna(0).sum()) if len(trials) else 0.0
    held = store.trials_frame(name, purpose="validation")
    val_counts = held["state"].value_counts().to_dict() if len(held) else {}
    domains = store.study_domains(name)
    from engine.costs import cost_unit, format_cost

    reach = cfg.target_reach()
    failed = trials[trials["state"] == "failed"] if len(trials) else trials
    if as_json:
        print_json({"config": cfg.to_dict(), "trials": counts, "validation_trials": val_counts, "cost_spent": spent,
                    "cost_unit": cost_unit(cfg), "domains": domains,
                    "target_reach": None if reach is None else asdict(reach),
                    "failed": [{"trial_id": int(r.trial_id), "run_id": r.run_id, "reason": r.reason}
                               for r in failed.itertuples()]})
        return
    console.print(f"[bold]{esc(cfg.name)}[/]  objective {esc(cfg.objective)} ({cfg.direction})")
    if cfg.description:
        console.print(esc(cfg.description), highlight=False)
    console.print(f"mixture domains: {esc(', '.join(cfg.domains))}")
    if domains["eval"]:
        console.print(f"evaluation domains: {esc(', '.join(domains['eval']))}")
    if domains["metric"]:
        console.print(f"metrics: {esc(', '.join(domains['metric']))}")
    unit = cost_unit(cfg)
    from engine.cli.trials import size_label

    for s in cfg.scales:
        console.print(f"scale {size_label(s.model_params)} params: steps {', '.join(map(str, s.steps))}"
                      + (f"; {s.cost_per_step:g} {unit} a step" if s.cost_per_step else ""), markup=False)
    if cfg.target:
        console.print(f"target: {cfg.target.model_params:,} params, "
                      + (f"{cfg.target.steps} steps" if cfg.target.steps else f"{cfg.target.tokens:g} tokens"))
        if reach is not None:
            console.print(f"note: {reach.describe(cfg.target)}", markup=False, highlight=False)
    console.print(f"runner: {cfg.runner.kind}; budget: {format_cost(cfg.budget, unit) if cfg.budget else 'none'}; "
                  f"spent: {format_cost(spent, unit)}", markup=False)
    if unit == "FLOPs":
        console.print("costs in FLOPs: 6 x model_params x tokens (give [[scales]] a cost_per_step to count in "
                      "GPU-hours or money)", markup=False)
    console.print("trials: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    for r in failed.itertuples():  # the reason ends with the tail of the run's log
        console.print(f"[red]trial {int(r.trial_id)} ({esc(r.run_id)}) failed[/]: {esc(r.reason or '')}",
                      highlight=False)
    if val_counts:
        console.print("validation runs (held out, never fitted on; `mixplan demo report`): "
                      + ", ".join(f"{k} {v}" for k, v in sorted(val_counts.items())))
    ev = store.events(name, limit=10)
    if len(ev):
        table = PlainTable(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold underline")
        for col in ("event", "trial", "kind", "actor", "when", "note"):
            table.add_column(col, no_wrap=col != "note")
        for r in ev.itertuples():
            trial = "" if r.trial_id != r.trial_id or r.trial_id is None else str(int(r.trial_id))
            table.add_row(str(r.event_id), trial, str(r.kind), str(r.actor), str(r.created_at)[:19],
                          str(_event_note(r.kind, r.detail)))
        console.print(table)


def _event_note(kind: str, detail: str | None) -> str:
    """The line worth reading in an event: why a trial was rejected, cancelled or failed;
    which config keys an edit changed."""
    import json

    try:
        d = json.loads(detail) if detail else {}
    except ValueError:
        return ""
    if kind == "config_edited":
        return "changed " + ", ".join(c.get("key", "?") for c in d.get("changes", []))
    if kind in ("rejected", "cancelled", "failed"):
        return str(d.get("reason") or "")
    return ""


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
