"""`mixplan bench ...`: benchmarks (not tests) that report speed and accuracy.

Each benchmark is one subcommand of ``bench_app`` whose body imports its module from
:mod:`engine.bench` lazily, so ``mixplan --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from engine.cli.common import JsonFlag, console, print_json

bench_app = typer.Typer(help="Benchmarks: store, predict, optimize, trainer.", no_args_is_help=True)


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


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
