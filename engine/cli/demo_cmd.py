"""`mixplan demo build|report`: (re)build the bundled demo, and its validation verdict."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.cli.common import DEFAULT_DB, DbOption, JsonFlag, console, esc, print_json
from engine.demo import DemoPlan
from engine.demo.study import PARTS

_DEFAULT = dict(DemoPlan().sizes)

demo_app = typer.Typer(help="The bundled demo: real built-in-trainer runs, validation runs at the target, and "
                            "the BO comparison on the synthetic landscape.", no_args_is_help=True)


@demo_app.command("build")
def build(
    db: DbOption = DEFAULT_DB,
    workers: Annotated[int, typer.Option("--workers", help="Runs trained at once (one CPU thread each).")] = 2,
    steps: Annotated[int, typer.Option("--steps", help="Steps per run.")] = DemoPlan().steps,
    small: Annotated[int, typer.Option("--n-0.1m", help="Mixtures at 0.1M parameters.")] = _DEFAULT[100_000],
    medium: Annotated[int, typer.Option("--n-0.5m", help="Mixtures at 0.5M parameters.")] = _DEFAULT[500_000],
    large: Annotated[int, typer.Option("--n-1m", help="Mixtures at 1M parameters.")] = _DEFAULT[1_000_000],
    only: Annotated[list[str] | None, typer.Option(
        "--only", help=f"Build only these parts (repeatable): {', '.join(PARTS)} (default: all, in that "
                       "order). `--only validation` after a new default model trains the new recommended "
                       "mixture and nothing else.")] = None,
    bo: Annotated[bool, typer.Option("--bo", help="The same as --only bo: the demo-bo-* strategy comparison "
                                     "(minutes; no training).")] = False,
    corpus: Annotated[str | None, typer.Option("--corpus", help="Corpus directory (default: the cache).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create or resume the demo: the `demo` study's runs (0.1M / 0.5M / 1M params), its validation
    runs at the 3M target (held out from every fit), and the `demo-bo-*` studies.

    Reproducible (fixed seeds and design) and resumable (run it again after an interruption:
    finished runs are kept)."""
    from engine.demo import build_demo
    from engine.errors import ValidationError

    parts = tuple(only or ()) + (("bo",) if bo else ())
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ValidationError(f"--only {bad[0]}: unknown part.", fix=f"use {', '.join(PARTS)}.")
    parts = tuple(p for p in PARTS if p in parts) or PARTS
    plan = DemoPlan(sizes=((100_000, small), (500_000, medium), (1_000_000, large)), steps=steps)
    summary = build_demo(db, plan=plan, workers=workers, corpus_dir=corpus, parts=parts,
                         log=None if as_json else (lambda m: console.print(m, markup=False, highlight=False)))
    if as_json:
        print_json(summary)
    else:
        console.print(f"demo in {db} ({', '.join(parts)}): {summary}", markup=False)


@demo_app.command("report")
def report(
    db: DbOption = DEFAULT_DB,
    study: Annotated[str, typer.Option("--study", help="The study whose validation runs to judge.")] = "demo",
    model: Annotated[str | None, typer.Option("--model", help="Judge this model's predictions (default: the "
                                                 "model the recommendation came from).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The validation verdict: per validation mixture at the target, predicted (+- std) vs observed
    loss, seeds, and the speed-up against uniform (AutoScale: steps uniform needs to reach its final
    loss / steps this mixture needs to reach it)."""
    from engine.cli.common import PlainTable, open_store
    from engine.plots import human
    from engine.validation import verdict

    v = verdict(open_store(db), study, model=model)
    if as_json:
        print_json(v.to_dict())
        return
    if not v.arms:
        console.print(f"study [bold]{esc(study)}[/] has no validation runs: `mixplan demo build --only validation`.")
        return
    console.print(f"[bold]{esc(study)}[/]: validation at the target {human(v.target[0])} params / {v.target[1]} steps, "
                  f"{v.scale_factor:.0f}x the largest size the model fits on ({human(v.largest_observed)}, "
                  f"{v.fit_runs} runs); predictions by {v.model}; {v.objective} ({v.direction}).")
    table = PlainTable(caption="predicted: +- 1 std; observed: seed mean +- half the range; z = (observed - predicted) "
                          "/ std; speed-up: steps uniform needs for its final loss / steps this mixture needs for it")
    for col in ("mixture", "seeds", "predicted", "observed", "z", "speed-up vs uniform"):
        table.add_column(col, no_wrap=col in ("predicted", "observed"))
    for a in v.arms:
        pred = "-" if a.pred_mean is None else f"{a.pred_mean:.4f} +- {a.pred_std:.4f}"
        obs = "-" if a.observed_mean is None else (f"{a.observed_mean:.4f}" + (
            f" +- {a.observed_spread:.4f}" if a.observed_spread is not None else ""))
        if a.pending:
            obs += f" ({a.pending} pending)"
        z = "-" if a.z is None else f"{a.z:+.1f}"
        if a.speedup is not None:
            sp = f"{a.speedup:.2f}x ({a.steps_to_uniform_final:.0f} steps)"
        elif a.observed and any(x.is_("uniform") and x.observed for x in v.arms):
            sp = "never reaches uniform's final loss"
        else:
            sp = "-"
        table.add_row(a.label, ", ".join(str(s) for s in a.seeds) or "-", pred, obs, z, sp)
    console.print(table)
    for a in v.arms:
        console.print(f"{a.label}: " + " ".join(f"{d} {w:.3f}" for d, w in a.weights.items()), highlight=False, markup=False)
    console.print(v.summary, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(demo_app, name="demo")
