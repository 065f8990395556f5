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


def strategy_label(strategy: object, source: object) -> str:
    """Who proposed a trial: its strategy, else ``imported`` / ``manual`` (never ``nan``)."""
    if isinstance(strategy, str) and strategy:
        return strategy
    return "imported" if source == "import" else str(source or "")


def top_mixture(weights: dict[str, float], k: int = 2) -> str:
    """The ``k`` largest weights, e.g. ``code .52 docs .21``: a mixture in a narrow column."""
    items = sorted(weights.items(), key=lambda kv: -kv[1])[:k]
    return " ".join(f"{d} {w:.2f}".replace(" 0.", " .").replace(" 1.00", " 1") for d, w in items)


def size_label(model_params: int) -> str:
    """100k, 1.5M, 1B: a model size in a narrow column."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if model_params >= div:
            return f"{model_params / div:.3g}{suffix}"
    return str(model_params)


def _num(v: object, fmt: str = ".4g") -> str:
    return "" if v is None or v != v else format(float(v), fmt)


def trials(
    study: StudyOption,
    state: Annotated[Optional[list[str]], typer.Option("--state", help="Only these states (repeatable).")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Every weight and the reasons in the table (for wide "
                                                      "terminals).")] = False,
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """List a study's trials: state, mixture, fidelity, who proposed them, the prediction and,
    once finished, the observed objective at the last checkpoint (`obs`, with the steps reached)."""
    from engine.costs import cost_unit, number

    store = open_store(db)
    df = store.trials_frame(study)
    if state:
        df = df[df["state"].isin(state)]
    df = df.assign(strategy=[strategy_label(a, b) for a, b in zip(df["strategy"], df["source"])])
    if as_json:
        print_json(df.astype(object).where(df.notna(), None).to_dict(orient="records"))
        return
    cfg = store.get_config(study)
    wcols = [c for c in df.columns if c.startswith("w_")]
    unit = cost_unit(cfg)
    if wide:
        table = PlainTable("id", "run", "state", "params", "steps", "mixture", "by", "pred", "obs", "obs steps",
                      f"cost ({unit})", "why", "rejected")
    else:  # fits 80 columns: top weights, size/steps in one column, no reasons
        table = PlainTable(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold underline")
        for name in ("id", "state", "size/steps", "mixture (top)", "by", "pred", "obs", "cost"):
            table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=21 if name.startswith("mix") else None)
    for r in df.to_dict(orient="records"):
        w = {c[2:]: float(r[c]) for c in wcols if r[c] is not None and r[c] == r[c]}
        steps = None if r["steps"] is None or r["steps"] != r["steps"] else int(r["steps"])
        pred = "" if r["pred_mean"] is None or r["pred_mean"] != r["pred_mean"] else (
            f"{r['pred_mean']:.4g}±{(r['pred_std'] or 0):.2g}")
        obs, at = _num(r["observed"]), r["observed_steps"]
        at = None if at is None or at != at else int(at)
        cost = "" if r["cost"] is None or r["cost"] != r["cost"] else number(r["cost"])
        if wide:
            table.add_row(str(r["trial_id"]), str(r["run_id"]), r["state"], f"{r['model_params']:,}",
                          "" if steps is None else str(steps), " ".join(f"{d}={v:.2f}" for d, v in w.items()),
                          r["strategy"], pred, obs, "" if at is None else str(at), cost, r["reason"] or "",
                          r["rejection_reason"] or "")
            continue
        if obs and at is not None and at != steps:
            obs += f" @{at}"  # the run stopped short of its planned steps
        table.add_row(str(r["trial_id"]), r["state"], f"{size_label(int(r['model_params']))}/{steps or '-'}",
                      top_mixture(w), r["strategy"], pred, obs, cost)
    console.print(table)
    if not wide:
        console.print(f"{cfg.objective}: pred = the proposer's prediction, obs = measured at the run's last "
                      f"checkpoint (@ steps where it stopped short); cost in {unit}. --wide: every weight and the "
                      "reasons.", markup=False, highlight=False)
        ended = df[df["rejection_reason"].notna()]
        for r in ended.tail(10).itertuples():
            console.print(f"{r.state} #{r.trial_id} by {r.rejected_by}: {r.rejection_reason}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("trials")(trials)
