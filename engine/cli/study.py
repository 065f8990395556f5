"""`mixplan study create|list|show`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import DEFAULT_DB, DbOption, JsonFlag, PlainTable, console, esc, open_store, print_json

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


@study_app.command("list")
def list_(db: DbOption = DEFAULT_DB, as_json: JsonFlag = False) -> None:
    """List the studies: domains, runs, checkpoints, runner."""
    studies = open_store(db).list_studies()
    if as_json:
        print_json([{"name": s.name, "domains": s.domains, "runs": s.runs, "checkpoints": s.checkpoints,
                     "runner": s.runner} for s in studies])
        return
    table = PlainTable("study", "domains", "runs", "checkpoints", "runner")
    for s in studies:
        table.add_row(s.name, ", ".join(s.domains), str(s.runs), str(s.checkpoints), s.runner)
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
    domains = store.study_domains(name)
    reach = cfg.target_reach()
    failed = trials[trials["state"] == "failed"] if len(trials) else trials
    if as_json:
        print_json({"config": cfg.to_dict(), "trials": counts, "cost_spent": spent, "domains": domains,
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
    for s in cfg.scales:
        console.print(f"scale {s.model_params:,} params: steps {esc(list(s.steps))}"
                      + (f", cost/step {s.cost_per_step:g}" if s.cost_per_step else ""))
    if cfg.target:
        console.print(f"target: {cfg.target.model_params:,} params, "
                      + (f"{cfg.target.steps} steps" if cfg.target.steps else f"{cfg.target.tokens:g} tokens"))
        if reach is not None:
            console.print(f"note: {esc(reach.describe(cfg.target))}", highlight=False)
    console.print(f"runner: {esc(cfg.runner.kind)}; budget: {cfg.budget if cfg.budget else 'none'}; spent: {spent:g}")
    console.print("trials: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    for r in failed.itertuples():  # the reason ends with the tail of the run's log
        console.print(f"[red]trial {int(r.trial_id)} ({esc(r.run_id)}) failed[/]: {esc(r.reason or '')}",
                      highlight=False)
    ev = store.events(name, limit=10)
    if len(ev):
        table = PlainTable("event", "trial", "kind", "actor", "when")
        for r in ev.itertuples():
            table.add_row(str(r.event_id), "" if r.trial_id != r.trial_id or r.trial_id is None else str(int(r.trial_id)),
                          r.kind, r.actor, str(r.created_at)[:19])
        console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
