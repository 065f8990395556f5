"""The built-in trainer: one mixture, one ladder size, one run -> per-domain losses.

What a run does (:func:`train`):

- **Model**: the ladder rung nearest to ``model_params`` (:func:`engine.training.model.nearest_size`;
  the rung used is reported in ``RunResult.info["size"]``). Cost is counted with the rung's
  non-embedding parameter count ``N``: FLOPs = 6 x N x tokens.
- **Batches**: each of the ``batch_size`` sequences of a step draws its domain independently
  from the mixture weights, then a uniformly random window of ``context + 1`` tokens of that
  domain's training split. The draws come from a NumPy generator seeded by ``seed``.
- **Optimiser**: AdamW (betas 0.9/0.95, weight decay 0.1 on matrices, gradient clipping at
  1.0); learning rate warms up linearly for ``warmup_steps`` (default 5% of the run, at
  least 1 step) and then follows a cosine to ``min_lr_ratio x lr`` **at the run's final
  step**. The schedule is defined by the full length of the run, so a checkpoint at step
  ``s < steps`` is *not* the same as a run of ``s`` steps (its learning rate has not been
  annealed yet; its loss is usually higher). Use the final checkpoint, or runs of each
  length, where that matters.
- **Validation**: at each checkpoint, mean cross-entropy (nats per token; per byte with the
  byte-level corpus) on every evaluation domain's validation split, over ``eval_batches x
  batch_size`` fixed windows evenly spaced through the split. The windows depend only on the
  corpus and ``context``, not on the seed or the mixture, so losses compare across runs.
- **Determinism**: same seed, corpus and spec -> identical losses on CPU (single-threaded runs
  are bitwise reproducible; with more threads results can differ in the last bits).
- **Throughput**: ``info["tokens_per_s"]`` (and ``tokens_per_cpu_s``, ``mfu``) count only the
  steps after the first ``timing_warmup_steps`` (default 1, or 3 with ``torch.compile``):
  the first steps pay for compilation, allocator and optimiser-state set-up, which a long run
  does not. Their time is ``warmup_s``; ``compile_s`` is what they took beyond steady-state
  steps (compilation, mostly). ``train_s`` is the time of all steps.
- **Devices**: CPU by default with ``torch.set_num_threads(threads)`` (default 1: two
  one-thread runs side by side beat one two-thread run, see FACTS.md); CUDA when present
  (bf16 autocast, TF32 matmuls, fused AdamW and ``torch.compile``).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch._dynamo  # noqa: F401 -- torch.optim imports it on the first optimiser (3-10 s);
# paying that at import lets a worker pool preload it in parallel, before the first run

from engine.data.corpus import Corpus
from engine.errors import ValidationError
from engine.records import Checkpoint, RunResult
from engine.training.model import GPT, GPTConfig, SizeChoice, nearest_size

#: Peak bf16 dense tensor FLOP/s of common GPUs, for MFU (substring of the device name).
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12,
              "L4": 121e12, "4090": 165e12, "V100": 125e12}

SCHEDULE_NOTE = ("linear warm-up then cosine decay to min_lr_ratio*lr at the run's final step; "
                 "intermediate checkpoints are not equivalent to shorter runs")


def default_lr(params: int) -> float:
    """Peak learning rate by model size (small byte-level models take a large one)."""
    if params <= 12_000_000:
        return 3e-3
    if params <= 120_000_000:
        return 1e-3
    if params <= 400_000_000:
        return 6e-4
    return 3e-4


@dataclass(frozen=True)
class TrainSpec:
    """One training run. ``weights`` maps training domains to mixture weights (normalised to
    sum 1; zero-weight domains may be absent from the corpus). ``model_params`` is the
    requested non-embedding size (or a ladder name like ``"0.5M"``)."""

    weights: Mapping[str, float]
    model_params: int | str
    steps: int
    seed: int = 0
    batch_size: int = 16
    context: int = 128
    lr: float | None = None  # None: default_lr(model size)
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None  # None: max(1, round(0.05 * steps))
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int | None = None  # checkpoint every k steps (and always at the last step)
    eval_steps: Sequence[int] | None = None  # explicit checkpoint steps (merged with eval_every)
    eval_batches: int = 4
    eval_domains: Sequence[str] | None = None  # None: every corpus domain
    threads: int = 1
    compile: bool | None = None  # None: on CUDA only
    timing_warmup_steps: int | None = None  # steps left out of tokens/s; None: 3 compiled, else 1
    extra: dict = field(default_factory=dict)

    def checkpoint_steps(self) -> list[int]:
        """The steps at which validation runs: eval_steps, multiples of eval_every, the end."""
        out = {self.steps}
        if self.eval_every:
            out.update(range(self.eval_every, self.steps + 1, self.eval_every))
        if self.eval_steps:
            out.update(int(s) for s in self.eval_steps if 0 < int(s) <= self.steps)
        return sorted(out)

    def timing_warmup(self, compiled: bool) -> int:
        """How many first steps the throughput leaves out (never all of them)."""
        w = self.timing_warmup_steps if self.timing_warmup_steps is not None else (3 if compiled else 1)
        return int(max(0, min(w, self.steps - 1)))

    def warmup(self) -> int:
        w = self.warmup_steps if self.warmup_steps is not None else round(0.05 * self.steps)
        return int(min(max(1, w), self.steps))

    def lr_at(self, step: int, peak: float) -> float:
        """Learning rate for optimiser step ``step`` (0-based)."""
        w = self.warmup()
        if step < w:
            return peak * (step + 1) / w
        span = max(1, self.steps - 1 - w)
        progress = min(1.0, (step - w) / span)
        floor = peak * self.min_lr_ratio
        return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))


def normalise_weights(weights: Mapping[str, float], domains: Sequence[str]) -> dict[str, float]:
    """Validate a mixture against the corpus and scale it to sum 1."""
    if not weights:
        raise ValidationError("The mixture is empty.", fix="give at least one domain weight.")
    clean = {}
    for d, w in weights.items():
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise ValidationError(f"Weight of '{d}' is not a number: {w!r}.") from None
        if not math.isfinite(w) or w < 0:
            raise ValidationError(f"Weight of '{d}' must be finite and >= 0, got {w}.")
        if w > 0:
            clean[str(d)] = w
    unknown = sorted(d for d in clean if d not in domains)
    if unknown:
        raise ValidationError(
            f"Mixture names domain(s) {unknown} that the corpus does not have ({list(domains)}).",
            fix="prepare them (`mixplan data prepare --domains ...`) or fix the domain names.",
        )
    total = sum(clean.values())
    if total <= 0:
        raise ValidationError("All mixture weights are zero.", fix="give some weight > 0.")
    return {d: w / total for d, w in clean.items()}


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class BatchSampler:
    """Per-sequence domain draws by mixture weight, uniform windows within the domain."""

    def __init__(self, corpus: Corpus, weights: Mapping[str, float], batch_size: int,
                 context: int, seed: int) -> None:
        self.names = list(weights)
        self.arrays = [corpus.train[d] for d in self.names]
        self.p = np.array([weights[d] for d in self.names], dtype=np.float64)
        self.p /= self.p.sum()
        self.batch_size, self.context = batch_size, context
        for d, a in zip(self.names, self.arrays):
            if len(a) < context + 2:
                raise ValidationError(f"Domain '{d}' has {len(a)} training tokens, fewer than "
                                      f"context + 2 = {context + 2}.", fix="use a shorter context.")
        self.highs = np.array([len(a) - context - 1 for a in self.arrays], dtype=np.int64)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.buf = np.empty((batch_size, context + 1), dtype=np.int64)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        doms = self.rng.choice(len(self.names), size=self.batch_size, p=self.p)
        offs = self.rng.integers(0, self.highs[doms] + 1)
        n = self.context + 1
        for i, (d, o) in enumerate(zip(doms, offs)):
            self.buf[i] = self.arrays[d][o:o + n]
        t = torch.from_numpy(self.buf.copy())
        return t[:, :-1], t[:, 1:], doms


def eval_windows(val: np.ndarray, n: int, context: int) -> np.ndarray:
    """``n`` fixed windows of ``context + 1`` tokens, evenly spaced through ``val``."""
    if len(val) < context + 1:
        raise ValidationError(f"A validation split holds {len(val)} tokens, fewer than "
                              f"context + 1 = {context + 1}.", fix="use a shorter context.")
    starts = np.linspace(0, len(val) - context - 1, n).astype(np.int64)
    return np.stack([np.asarray(val[s:s + context + 1], dtype=np.int64) for s in starts])


def corpus_provenance(corpus: Corpus, domains: Sequence[str]) -> dict | None:
    """Where the run's data came from, from the corpus manifest: the root and, per domain used
    (trained on or evaluated), its name, package, version, source, licence and recipe key --
    enough to rebuild the same corpus. None for a corpus built in memory (no manifest)."""
    info = corpus.info
    if info is None:
        return None
    doms = {}
    for d in domains:
        di = info.domains.get(d)
        if di is not None:
            doms[d] = {"name": di.name, "kind": di.kind, "package": di.package, "version": di.version,
                       "source": di.source, "licence": di.licence, "key": di.key,
                       "train_tokens": di.train_tokens, "val_tokens": di.val_tokens}
    return {"root": str(info.root), "format": info.format, "domains": doms}


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def train(
    spec: TrainSpec,
    corpus: Corpus,
    *,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    device: str | torch.device | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train one GPT on ``corpus`` with the mixture ``spec.weights``; return its checkpoints.

    ``on_checkpoint`` is called with each :class:`engine.records.Checkpoint` as soon as it is
    measured (losses per evaluation domain in nats per token, ``cost`` = FLOPs so far,
    ``wall_s`` since the start). See the module docstring for the schedule and sampling.
    """
    if spec.steps < 1:
        raise ValidationError(f"steps must be >= 1, got {spec.steps}.")
    if spec.batch_size < 1 or spec.context < 1:
        raise ValidationError("batch_size and context must be >= 1.")
    weights = normalise_weights(spec.weights, corpus.domains)
    eval_domains = list(spec.eval_domains) if spec.eval_domains else list(corpus.domains)
    missing = [d for d in eval_domains if d not in corpus.domains]
    if missing:
        raise ValidationError(f"Evaluation domain(s) {missing} are not in the corpus "
                              f"({corpus.domains}).")
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    size: SizeChoice = nearest_size(spec.model_params)
    peak_lr = spec.lr if spec.lr is not None else default_lr(size.params)
    say = log or (lambda s: None)

    prev_threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(max(1, int(spec.threads)))
    try:
        t_start = time.perf_counter()
        torch.manual_seed(spec.seed)
        model = GPT(GPTConfig(size.width, size.layers, size.heads, corpus.vocab_size,
                              spec.context, name=size.name)).to(dev)
        n_params = model.non_embedding_params()
        opt_kwargs: dict = {"betas": (0.9, 0.95), "eps": 1e-8}
        if cuda:
            opt_kwargs["fused"] = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        opt = torch.optim.AdamW(param_groups(model, spec.weight_decay), lr=peak_lr, **opt_kwargs)
        use_compile = spec.compile if spec.compile is not None else cuda
        fwd = torch.compile(model) if use_compile else model
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext())

        sampler = BatchSampler(corpus, weights, spec.batch_size, spec.context, spec.seed)
        n_eval = spec.eval_batches * spec.batch_size
        evalsets = {d: torch.from_numpy(eval_windows(corpus.val[d], n_eval, spec.context)).to(dev)
                    for d in eval_domains}
        ckpt_steps = set(spec.checkpoint_steps())
        timing_warmup = spec.timing_warmup(bool(use_compile))
        tokens_per_step = spec.batch_size * spec.context
        flops_per_token = 6 * n_params
        say(f"{size.describe()}; {spec.steps} steps x {tokens_per_step} tokens on {dev}, "
            f"lr {peak_lr:g}, checkpoints at {sorted(ckpt_steps)}")

        def evaluate() -> dict[str, float]:
            model.eval()
            out = {}
            with torch.no_grad(), autocast:
                for d, data in evalsets.items():
                    total = torch.zeros((), dtype=torch.float64, device=dev)
                    for i in range(0, len(data), spec.batch_size):
                        chunk = data[i:i + spec.batch_size]
                        loss = fwd(chunk[:, :-1], chunk[:, 1:], reduction="sum")
                        total += loss.double()
                    out[d] = float(total) / (len(data) * spec.context)
            model.train()
            return out

        checkpoints: list[Checkpoint] = []
        train_trace: list[dict] = []
        train_s = 0.0
        train_cpu_s = 0.0  # process CPU time of the steps: robust to a busy machine (1 thread)
        warmup_s = warmup_cpu_s = 0.0  # the first timing_warmup steps (compilation, set-up)
        loss_sum = torch.zeros((), device=dev)
        loss_n = 0
        model.train()
        for step in range(spec.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            lr = spec.lr_at(step, peak_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y, _ = sampler()
            if cuda:
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with autocast:
                loss = fwd(x, y)
            loss.backward()
            if spec.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            loss_n += 1
            done = step + 1
            if cuda and (done in ckpt_steps or done == timing_warmup):
                torch.cuda.synchronize()
            train_s += time.perf_counter() - t0
            train_cpu_s += time.process_time() - c0
            if done == timing_warmup:
                warmup_s, warmup_cpu_s = train_s, train_cpu_s
            if done in ckpt_steps:
                train_trace.append({"steps": done, "train_loss": float(loss_sum) / loss_n, "lr": lr})
                loss_sum.zero_()
                loss_n = 0
                losses = evaluate()
                tokens = done * tokens_per_step
                ck = Checkpoint(steps=done, tokens=float(tokens), losses=losses, metrics={},
                                cost=float(flops_per_token * tokens),
                                wall_s=round(time.perf_counter() - t_start, 3))
                checkpoints.append(ck)
                say(f"step {done}: " + ", ".join(f"{d} {v:.3f}" for d, v in losses.items()))
                if on_checkpoint is not None:
                    on_checkpoint(ck)
        wall = time.perf_counter() - t_start
        total_tokens = spec.steps * tokens_per_step
        timed_steps = spec.steps - timing_warmup
        timed_tokens = timed_steps * tokens_per_step
        timed_s, timed_cpu_s = train_s - warmup_s, train_cpu_s - warmup_cpu_s
        tps = timed_tokens / timed_s if timed_s > 0 else float("nan")
        steady_step_s = timed_s / timed_steps if timed_steps > 0 else 0.0
        compile_s = max(0.0, warmup_s - timing_warmup * steady_step_s) if use_compile else 0.0
        info = {
            "size": size.name,
            "model_params": n_params,
            "requested_params": size.requested,
            "width": size.width, "layers": size.layers, "heads": size.heads,
            "vocab_size": corpus.vocab_size,
            "device": str(dev) if not cuda else torch.cuda.get_device_name(dev),
            "threads": spec.threads if not cuda else None,
            "compiled": bool(use_compile),
            "dtype": "bfloat16 autocast" if cuda else "float32",
            "tokens": total_tokens,
            "tokens_per_s": tps,
            "train_s": train_s,
            "train_cpu_s": train_cpu_s,
            "tokens_per_cpu_s": timed_tokens / timed_cpu_s if timed_cpu_s > 0 else float("nan"),
            "timed_steps": timed_steps,
            "timing_warmup_steps": timing_warmup,
            "warmup_s": warmup_s,
            "compile_s": compile_s,
            "flops": float(flops_per_token * total_tokens),
            "lr": peak_lr, "warmup_steps": spec.warmup(), "min_lr_ratio": spec.min_lr_ratio,
            "schedule": SCHEDULE_NOTE,
            "weights": weights,
            "seed": spec.seed, "batch_size": spec.batch_size, "context": spec.context,
            "eval_tokens_per_domain": n_eval * spec.context,
            "loss_unit": "nats per byte" if corpus.vocab_size <= 256 else "nats per token",
            "train_trace": train_trace,
        }
        provenance = corpus_provenance(corpus, sorted({*weights, *eval_domains}))
        if provenance is not None:
            info["corpus"] = provenance
        if cuda:
            name = torch.cuda.get_device_name(dev)
            peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
            if peak:
                info["mfu"] = flops_per_token * tps / peak
        return RunResult(checkpoints=checkpoints, cost=float(flops_per_token * total_tokens),
                         wall_s=round(wall, 3), info=info)
    finally:
        if not cuda:
            torch.set_num_threads(prev_threads)
