"""`mixplan approve|reject|trials`: a person's say over proposed trials."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from engine.cli.common import DEFAULT_DB, DbOption, JsonFlag, PlainTable, StudyOption, console, open_store, print_json
from engine.errors import ValidationError

TrialIds = Annotated[Optional[list[int]], typer.Argument(help="Trial ids (see `mixplan trials --study S`).")]


def _ids(trial_ids: list[int] | None, all_: bool) -> list[int] | None:
    if all_ and trial_ids:
        raise ValidationError("give trial ids or --all, not both.")
    if not all_ and not trial_ids:
        raise ValidationError("no trial given.", fix="name trial ids, or pass --all for every proposed trial.")
    return None if all_ else list(trial_ids or [])


def approve(
    trial_ids: TrialIds = None,
    study: StudyOption = ...,
    all_: Annotated[bool, typer.Option("--all", help="Approve every proposed trial.")] = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Approve proposed trials so `mixplan run` will train them (all or none: an illegal one stops all)."""
    done = open_store(db).approve(study, _ids(trial_ids, all_), actor="cli")
    console.print(f"approved {len(done)} trial(s): {', '.join(map(str, done)) or '-'}")


def reject(
    trial_ids: TrialIds = None,
    study: StudyOption = ...,
    all_: Annotated[bool, typer.Option("--all", help="Reject every proposed trial.")] = False,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why (kept in the event log).")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Reject proposed (or approved) trials."""
    done = open_store(db).reject(study, _ids(trial_ids, all_), actor="cli", reason=reason)
    console.print(f"rejected {len(done)} trial(s): {', '.join(map(str, done)) or '-'}")


def trials(
    study: StudyOption,
    state: Annotated[Optional[list[str]], typer.Option("--state", help="Only these states (repeatable).")] = None,
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """List a study's trials with their state, mixture, fidelity and why they were proposed."""
    df = open_store(db).trials_frame(study)
    if state:
        df = df[df["state"].isin(state)]
    if as_json:
        print_json(df.astype(object).where(df.notna(), None).to_dict(orient="records"))
        return
    wcols = [c for c in df.columns if c.startswith("w_")]
    table = PlainTable("id", "run", "state", "params", "steps", "mixture", "strategy", "pred", "cost")
    for r in df.to_dict(orient="records"):
        mix = " ".join(f"{c[2:]}={r[c]:.2f}" for c in wcols if r[c] is not None)
        pred = "" if r["pred_mean"] is None or r["pred_mean"] != r["pred_mean"] else (
            f"{r['pred_mean']:.4g}±{(r['pred_std'] or 0):.2g}")
        table.add_row(str(r["trial_id"]), str(r["run_id"]), r["state"], f"{r['model_params']:,}",
                      "" if r["steps"] is None or r["steps"] != r["steps"] else str(int(r["steps"])), mix,
                      str(r["strategy"] or r["source"]), pred,
                      "" if r["cost"] is None or r["cost"] != r["cost"] else f"{r['cost']:.4g}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("trials")(trials)
