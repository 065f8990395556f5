"""Trainer throughput: the built-in trainer's tokens/s against a plain PyTorch loop.

For each ladder size, in one process and one thread setting, alternately runs

- **trainer**: :func:`engine.training.train` (mixture sampling, LR schedule, gradient clipping,
  per-domain evaluation at the end; its ``tokens_per_s`` counts training steps only), and
- **plain**: the minimal loop over the same :class:`~engine.training.model.GPT` — random
  windows of one array, ``AdamW``, ``loss.backward()``, ``step()``, nothing else,

``repeats`` times each and keeps each side's best (the machine is shared, so the best is the
least disturbed measurement). Both sides leave their first steps out of the timing (one step,
three with ``torch.compile`` on CUDA: :meth:`TrainSpec.timing_warmup`), so compilation and
set-up are not counted as training; their time is reported apart (``trainer_warmup_s``,
``plain_warmup_s``, and the trainer's ``trainer_compile_s``). ``ratio = trainer / plain``: 1.0 means the trainer adds no
overhead. Tokens per CPU-second (process CPU time, one thread) are reported too: on a busy
shared machine they stay close to what an idle core would give, while wall-clock tokens/s
drop with the load (the load average is recorded with the result). Run ``python -m engine.bench.trainer_bench`` or call :func:`run_trainer_bench`.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Sequence


def _plain_loop(size: str, corpus, *, steps: int, batch_size: int, context: int, threads: int,
                device, seed: int = 0, warmup: int = 1) -> tuple[float, float, float]:
    """(tokens/s, tokens per CPU-second, warm-up seconds) of the minimal training loop of the
    same model; the first ``warmup`` of the ``steps`` (compilation, set-up) are not timed."""
    import numpy as np
    import torch

    from engine.training.model import GPT, GPTConfig, nearest_size
    from engine.training.trainer import resolve_device

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    prev = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(threads)
    try:
        choice = nearest_size(size)
        torch.manual_seed(seed)
        model = GPT(GPTConfig(choice.width, choice.layers, choice.heads, corpus.vocab_size,
                              context)).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, **({"fused": True} if cuda else {}))
        fwd = torch.compile(model) if cuda else model
        data = np.asarray(corpus.train[corpus.domains[0]])
        rng = np.random.default_rng(seed)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else None
        warmup = max(0, min(int(warmup), steps - 1))
        t_start = t0 = time.perf_counter()
        c0 = time.process_time()
        warmup_s = 0.0
        for i in range(steps):
            if i == warmup and i > 0:  # the timed part starts here
                if cuda:
                    torch.cuda.synchronize()
                t0, c0 = time.perf_counter(), time.process_time()
                warmup_s = t0 - t_start
            offs = rng.integers(0, len(data) - context - 1, size=batch_size)
            batch = torch.from_numpy(np.stack([data[o:o + context + 1] for o in offs]).astype(np.int64))
            x, y = batch[:, :-1].to(dev), batch[:, 1:].to(dev)
            if ctx is not None:
                with ctx:
                    loss = fwd(x, y)
            else:
                loss = fwd(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        tokens = (steps - warmup) * batch_size * context
        return tokens / (time.perf_counter() - t0), tokens / max(time.process_time() - c0, 1e-9), warmup_s
    finally:
        if not cuda:
            torch.set_num_threads(prev)


def run_trainer_bench(
    sizes: Sequence[str] = ("0.1M", "0.5M", "1M"),
    *,
    steps: int = 60,
    batch_size: int = 16,
    context: int = 128,
    threads: int = 1,
    repeats: int = 2,
    corpus=None,
    device=None,
) -> dict:
    """Measure trainer vs plain-loop tokens/s for each ladder size; return a plain dict.

    ``corpus`` defaults to the tiny offline corpus (:func:`engine.data.build_local_corpus`)
    built in a temporary directory. Returns ``{"device", "threads", "steps", "batch_size",
    "context", "load_average", "rows": [{"size", "params", "trainer_tokens_per_s",
    "plain_tokens_per_s", "ratio", "trainer_all", "plain_all", "trainer_tokens_per_cpu_s",
    "plain_tokens_per_cpu_s", "cpu_ratio", "warmup_steps", "trainer_warmup_s", "plain_warmup_s",
    "trainer_compile_s"}]}``: tokens/s leave the warm-up steps out (see the module doc).
    """
    import torch

    from engine.data.corpus import build_local_corpus
    from engine.training.model import nearest_size
    from engine.training.trainer import TrainSpec, resolve_device, train

    tmp = None
    if corpus is None:
        tmp = tempfile.TemporaryDirectory(prefix="mixplan-bench-")
        corpus = build_local_corpus(tmp.name).load()
    try:
        dev = resolve_device(device)
        weights = {d: 1.0 for d in corpus.domains}
        rows = []
        for size in sizes:
            trainer_tps, plain_tps, trainer_cpu, plain_cpu = [], [], [], []
            trainer_warm, plain_warm, compile_s = [], [], []
            spec = TrainSpec(weights=weights, model_params=size, steps=steps, batch_size=batch_size,
                             context=context, threads=threads, eval_batches=1)
            warmup = spec.timing_warmup(dev.type == "cuda")  # the trainer compiles on CUDA only
            for _ in range(repeats):
                wall, cpu, warm = _plain_loop(size, corpus, steps=steps, batch_size=batch_size,
                                              context=context, threads=threads, device=dev, warmup=warmup)
                plain_tps.append(wall)
                plain_cpu.append(cpu)
                plain_warm.append(warm)
                res = train(spec, corpus, device=dev)
                trainer_tps.append(res.info["tokens_per_s"])
                trainer_cpu.append(res.info["tokens_per_cpu_s"])
                trainer_warm.append(res.info["warmup_s"])
                compile_s.append(res.info["compile_s"])
            best_t, best_p = max(trainer_tps), max(plain_tps)
            rows.append({
                "size": size, "params": nearest_size(size).params,
                "trainer_tokens_per_s": best_t, "plain_tokens_per_s": best_p,
                "ratio": best_t / best_p,
                "trainer_all": trainer_tps, "plain_all": plain_tps,
                "trainer_tokens_per_cpu_s": max(trainer_cpu), "plain_tokens_per_cpu_s": max(plain_cpu),
                "cpu_ratio": max(trainer_cpu) / max(plain_cpu),
                "warmup_steps": warmup, "trainer_warmup_s": trainer_warm, "plain_warmup_s": plain_warm,
                "trainer_compile_s": compile_s,
            })
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return {"device": name, "load_average": load, "cpus": os.cpu_count(), "threads": threads if dev.type != "cuda" else None,
                "steps": steps, "batch_size": batch_size, "context": context,
                "repeats": repeats, "rows": rows}
    finally:
        if tmp is not None:
            tmp.cleanup()


def format_trainer_bench(result: dict) -> str:
    """A plain-text table of :func:`run_trainer_bench`'s result."""
    head = (f"trainer benchmark on {result['device']}"
            + (f", {result['threads']} thread(s)" if result.get("threads") else "")
            + f", batch {result['batch_size']} x context {result['context']}, {result['steps']} "
            f"steps, best of {result['repeats']}")
    if result.get("load_average") is not None:
        head += f" (load average {result['load_average']:.1f} on {result['cpus']} CPUs)"
    lines = [head, f"{'size':>6} {'params':>12} {'trainer tok/s':>14} {'plain tok/s':>12} {'ratio':>6}"
                   f" {'trainer tok/cpu-s':>18} {'plain tok/cpu-s':>16} {'ratio':>6}"]
    for r in result["rows"]:
        lines.append(f"{r['size']:>6} {r['params']:>12,} {r['trainer_tokens_per_s']:>14,.0f} "
                     f"{r['plain_tokens_per_s']:>12,.0f} {r['ratio']:>6.2f}"
                     f" {r['trainer_tokens_per_cpu_s']:>18,.0f} {r['plain_tokens_per_cpu_s']:>16,.0f}"
                     f" {r['cpu_ratio']:>6.2f}")
    return "\n".join(lines)


def print_trainer_bench(result: dict) -> None:
    print(format_trainer_bench(result))


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m engine.bench.trainer_bench")
    p.add_argument("--sizes", default="0.1M,0.5M,1M")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--device", default=None)
    p.add_argument("--corpus", default=None, help="a prepared corpus directory (default: tiny offline one)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    corpus = None
    if a.corpus:
        from engine.data.corpus import Corpus

        corpus = Corpus.load(a.corpus)
    res = run_trainer_bench([s.strip() for s in a.sizes.split(",") if s.strip()], steps=a.steps,
                            batch_size=a.batch_size, context=a.context, threads=a.threads,
                            repeats=a.repeats, corpus=corpus, device=a.device)
    print(json.dumps(res, indent=2) if a.json else format_trainer_bench(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
