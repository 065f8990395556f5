"""The built-in trainer as a command (DESIGN.md contract 3), usable through the command runner:

    python -m engine.training.cli_train --weights W.json --params N --steps S --out DIR \\
        [--tokens T] [--corpus DIR] [--seed 0] [--eval-every K] [--threads 1] ...

``W.json`` is ``{"domain": weight, ...}``. ``--tokens`` may replace ``--steps`` (steps =
ceil(tokens / (batch_size x context))). The corpus is ``--corpus``, else ``$MIXPLAN_CACHE``,
else ``~/.cache/mixplan/corpus``; built-in domains the mixture needs but the cache lacks are
prepared first (this may download). Writes ``DIR/result.json``::

    {"checkpoints": [{"tokens": .., "steps": .., "losses": {dom: ..}, "metrics": {},
                      "cost": .., "wall_s": ..}, ...],
     "cost": <FLOPs = 6 x non-embedding params x tokens>, "wall_s": .., "info": {...}}

and, after every checkpoint, ``DIR/progress.json`` in the same shape (both replaced
atomically), so a watcher can collect finished checkpoints of a run that later dies.
Exit status 0 on success, 2 on a usage / input error (message on stderr), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from engine.errors import MixplanError, ValidationError
from engine.outfile import write_atomic


def result_dict(checkpoints, cost, wall_s=None, info=None) -> dict:
    """The contract-3 ``result.json`` payload from :class:`engine.records.Checkpoint` objects."""
    out = {
        "checkpoints": [
            {"tokens": c.tokens, "steps": c.steps, "losses": dict(c.losses),
             "metrics": dict(c.metrics), "cost": c.cost, "wall_s": c.wall_s}
            for c in checkpoints
        ],
        "cost": cost,
    }
    if wall_s is not None:
        out["wall_s"] = wall_s
    if info is not None:
        out["info"] = info
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m engine.training.cli_train",
                                description="Train one mixture with mixplan's built-in GPT "
                                            "trainer and write result.json (contract 3).")
    p.add_argument("--weights", required=True, help="JSON file {domain: weight}")
    p.add_argument("--params", required=True, help="requested non-embedding params (or a "
                   "ladder name such as 0.5M); the nearest ladder rung is used")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--steps", type=int)
    g.add_argument("--tokens", type=float)
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--corpus", default=None, help="prepared corpus directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--eval-steps", default=None, help="comma-separated checkpoint steps")
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if present)")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def load_weights(path: str) -> dict[str, float]:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValidationError("weights file not found.", file=path) from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON ({exc}).", file=path) from None
    if not isinstance(raw, dict) or not raw:
        raise ValidationError('expected a JSON object {"domain": weight, ...}.', file=path)
    return raw


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        weights = load_weights(args.weights)
        from engine.data.corpus import Corpus, default_cache_dir, prepare_corpus, read_manifest
        from engine.data.sources import BUILTIN_SOURCES
        from engine.errors import NotFoundError
        from engine.training.trainer import TrainSpec, train

        root = Path(args.corpus).expanduser() if args.corpus else default_cache_dir()
        try:
            have = set(read_manifest(root).domains)
        except NotFoundError:
            have = set()
        need = [d for d, w in weights.items() if float(w) > 0 and d not in have]
        if need:
            unknown = [d for d in need if d not in BUILTIN_SOURCES]
            if unknown:
                raise ValidationError(
                    f"Domain(s) {unknown} are neither in the corpus at {root} nor built-in.",
                    fix="prepare them with `mixplan data prepare --cache-dir ... --add NAME=PATH`.")
            log(f"preparing domain(s) {need} in {root}")
            prepare_corpus(root, need, progress=lambda d, m, f: log(f"  {d}: {m}"))
        corpus = Corpus.load(root)
        batch_tokens = args.batch_size * args.context
        steps = args.steps if args.steps is not None else max(1, math.ceil(args.tokens / batch_tokens))
        eval_steps = [int(s) for s in args.eval_steps.split(",") if s.strip()] if args.eval_steps else None
        params: int | str = args.params
        try:
            params = int(float(args.params))
        except ValueError:
            pass
        spec = TrainSpec(weights=weights, model_params=params, steps=steps, seed=args.seed,
                         batch_size=args.batch_size, context=args.context, lr=args.lr,
                         eval_every=args.eval_every, eval_steps=eval_steps,
                         eval_batches=args.eval_batches, threads=args.threads)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        seen = []

        def on_checkpoint(ck) -> None:
            seen.append(ck)
            write_atomic(out / "progress.json",
                         json.dumps(result_dict(seen, ck.cost, ck.wall_s, {"partial": True}), indent=2))

        res = train(spec, corpus, on_checkpoint=on_checkpoint, device=args.device, log=log)
        info = dict(res.info)
        info.setdefault("corpus", {"root": str(root)})  # the trainer gives the full provenance
        write_atomic(out / "result.json", json.dumps(result_dict(res.checkpoints, res.cost, res.wall_s, info),
                                                     indent=2))
        log(f"wrote {out / 'result.json'} ({info['size']}, {info['tokens_per_s']:.0f} tokens/s)")
        return 0
    except MixplanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
