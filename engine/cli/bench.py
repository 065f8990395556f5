"""`mixplan bench ...`: benchmarks (not tests) that report speed and accuracy.

Each benchmark is one subcommand of ``bench_app`` whose body imports its module from
:mod:`engine.bench` lazily, so ``mixplan --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from engine.cli.common import JsonFlag, console, esc, print_json

bench_app = typer.Typer(help="Benchmarks: store, predict, backtest, optimize, trainer.", no_args_is_help=True)


@bench_app.command("store")
def store(
    rows: Annotated[int, typer.Option("--rows", help="Checkpoint rows in the synthetic run table.")] = 100_000,
    checkpoints: Annotated[int, typer.Option("--checkpoints", help="Checkpoints per run.")] = 20,
    domains: Annotated[int, typer.Option("--domains", help="Mixture (and loss) domains.")] = 5,
    repeats: Annotated[int, typer.Option("--repeats", help="Repeats per query (the median is reported).")] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Import speed and the app's query latencies at --rows checkpoints, with raw-DuckDB baselines
    measured in the same run (ratio = store time / baseline time)."""
    from rich.table import Table

    from engine.bench.store_bench import run_store_bench

    result = run_store_bench(rows, repeats=repeats, checkpoints=checkpoints, domains=domains)
    if as_json:
        print_json(result)
        return
    table = Table("step", "seconds", "rows", "rows/s", "baseline", "baseline s", "ratio",
                  title=f"store benchmark: {result['rows']:,} checkpoints, {result['runs']:,} runs, "
                        f"{result['domains']} domains (median of {result['repeats']})")
    for t in result["timings"]:
        table.add_row(t["name"], f"{t['seconds']:.3f}", f"{t['rows']:,}", f"{t['rows_per_s']:,.0f}",
                      t["baseline"] or "", "" if t["baseline_seconds"] is None else f"{t['baseline_seconds']:.3f}",
                      "" if t["ratio"] is None else f"{t['ratio']:.2f}x")
    console.print(table)


@bench_app.command("trainer")
def trainer(
    sizes: Annotated[str, typer.Option("--sizes", help="Ladder sizes, comma-separated.")] = "0.1M,0.5M,1M",
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps per measurement.")] = 60,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads (FACTS: pin 1 per run).")] = 1,
    repeats: Annotated[int, typer.Option("--repeats", help="Repeats (the best is reported).")] = 2,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda if present).")] = None,
    corpus: Annotated[str | None, typer.Option("--corpus", help="Prepared corpus dir (default: tiny offline one).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Built-in trainer tokens/s against a plain PyTorch loop of the same model, same run (ratio)."""
    from engine.bench.trainer_bench import format_trainer_bench, run_trainer_bench

    loaded = None
    if corpus:
        from engine.data.corpus import Corpus

        loaded = Corpus.load(corpus)
    result = run_trainer_bench([x.strip() for x in sizes.split(",") if x.strip()], steps=steps, threads=threads,
                               repeats=repeats, corpus=loaded, device=device)
    if as_json:
        print_json(result)
    else:
        console.print(format_trainer_bench(result), highlight=False)


@bench_app.command("predict")
def predict(
    which: Annotated[str, typer.Argument(help="extrapolation | regmix | mfms | scaling | all")] = "all",
    quick: Annotated[bool, typer.Option("--quick", help="Smaller: Pile-CC only, splits E1/E3, 20k rows.")] = False,
    out: Annotated[str | None, typer.Option("--out", help="Also write the results as JSON here.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Extrapolation backtests run at once (a process "
                                      "and a CPU thread each; the full run took 4 min with 2 on a 2-core machine).")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """Loss models on real data: leave-larger-out extrapolation (fit small sizes, predict larger:
    Spearman, MRE, regret of the predicted best, std coverage; RegMix 1M+60M -> 1B and the MFMS
    simulator's size splits, with mfms-gp, the previous default, as the baseline), RegMix tables (R2/Spearman, 1M -> 60M/1B), MFMS simulator
    splits (train on sizes <= X, test above), and the 100k-row fit against the exact GP. Every
    model gets a row (one that cannot fit says why); tables show fit and predict seconds.
    Reads ../shared/benchmarks (or $MIXPLAN_BENCHMARKS); skips what is absent."""
    import json
    from pathlib import Path

    from engine.bench.predict import run_predict_bench

    from engine.outfile import check_out_path, write_out_file

    if which not in ("regmix", "mfms", "scaling", "extrapolation", "all"):
        raise typer.BadParameter("choose extrapolation, regmix, mfms, scaling or all.")
    if out:  # a bad --out is refused before minutes of benchmarking, not after
        check_out_path(out, overwrite=True, example="predict.json")
    result = run_predict_bench(which, quick=quick, jobs=jobs, log=(lambda *a, **k: None) if as_json else print)
    if out:
        text = json.dumps(result, indent=2, default=float)
        write_out_file(out, lambda tmp: Path(tmp).write_text(text), overwrite=True, example="predict.json")
    if as_json:
        print_json(result)
        return
    from engine.bench.predict import format_tables

    for table in format_tables(result):
        console.print(table)


@bench_app.command("backtest")
def backtest_speed(
    models: Annotated[str, typer.Option("--models", help="Comma-separated models to backtest.")] =
        "dmsl,mixing-law,mfms-gp,regmix",
    quick: Annotated[bool, typer.Option("--quick", help="100 runs instead of 500.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """How long `mixplan backtest` takes on a 500-run study (4 models, calibrated; target < 60 s):
    seconds and fits per model, against one fit of the same model on every run, same run (ratio).
    The product's synthetic study, and the MFMS simulator's runs where ../shared/benchmarks has it."""
    from engine.bench.backtest_speed import backtest_speed as run, format_backtest_speed
    from engine.models import model_names

    names = model_names(models)
    result = run(models=names, quick=quick, log=(lambda *a, **k: None) if as_json else print)
    if as_json:
        print_json(result)
        return
    for table in format_backtest_speed(result):
        console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


@bench_app.command("optimize")
def optimize(
    objective: Annotated[str, typer.Option("--objective", help="Simulator output(s), comma-separated: loss_<domain> "
                                           "or metric_hellaswag|piqa|arc_easy.")] = "loss_stackexchange",
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per objective.")] = 10,
    budget: Annotated[float, typer.Option("--budget", help="Cost per strategy and seed (1B x 100 steps = 1).")] = 3000.0,
    max_iter: Annotated[int, typer.Option("--max-iter", help="At most this many runs per strategy and seed.")] = 200,
    strategies: Annotated[str, typer.Option("--strategies", help="Comma-separated strategies.")] =
        "mfms-bo,random,hyperband,mf-bo,bo,autoscale",
    workers: Annotated[int, typer.Option("--workers", help="Processes (seeds run in parallel).")] = 2,
    out: Annotated[str, typer.Option("--out", help="Output directory (CSV, HTML plot, JSON).")] = "bench-optimize",
    sim: Annotated[str | None, typer.Option("--sim", help="Path to mfms-sim weights.json (else $MIXPLAN_MFMS_SIM "
                                             "or ../shared/benchmarks/mfms-sim).")] = None,
    latency: Annotated[bool, typer.Option("--latency/--no-latency", help="Also time a q=4 proposal at 500 runs x 20 "
                                          "checkpoints.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """All strategies on the MFMS simulator: regret at 1B/19,500 steps vs cumulative cost, and
    mfms-bo's speed-up over each baseline (median over seeds with the spread)."""
    from pathlib import Path

    from engine.bench.optimize_report import format_summary
    from engine.bench.optimize import run_benchmark

    res = run_benchmark([o.strip() for o in objective.split(",") if o.strip()],
                        [s.strip() for s in strategies.split(",") if s.strip()], seeds, Path(out), budget=budget,
                        max_iter=max_iter, workers=workers, weights_path=sim, measure_latency=latency,
                        log=(lambda *_: None) if as_json else console.print)
    if as_json:
        print_json(res)
    else:
        console.print(format_summary(res), highlight=False)
        console.print(f"wrote {esc(out)}/optimize_runs.csv, optimize_summary.csv, optimize_regret.html")
