"""`mixplan data prepare|info`: build and inspect the built-in multi-domain corpus.

Registered into the main CLI as ``mixplan data``. Nothing heavy is imported at module level
(the corpus code needs numpy only, and only inside the commands).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

data_app = typer.Typer(
    help=(
        "The built-in corpus: six offline text domains (code, docs, books, encyclopedia, "
        "quotes, latex), byte-level, split train/validation by document, cached in "
        "$MIXPLAN_CACHE or ~/.cache/mixplan/corpus."
    ),
    no_args_is_help=True,
)

CacheOption = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="Corpus directory (default $MIXPLAN_CACHE or "
                 "~/.cache/mixplan/corpus).", envvar="MIXPLAN_CACHE"),
]


def _domains_arg(domains: list[str] | None, add: list[str] | None) -> dict | None:
    from engine.errors import ValidationError

    names: list[str] = []
    for item in domains or []:
        names += [d.strip() for d in item.split(",") if d.strip()]
    if not names and not add:
        return None
    out: dict = {n: None for n in names}
    for item in add or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValidationError(f"--add {item!r} is not NAME=PATH.",
                                  fix="e.g. --add web=/data/web_texts or --add web=uint16:/data/web.bin")
        out[name.strip()] = value.strip()
    return out


@data_app.command("prepare")
def prepare(
    cache_dir: CacheOption = None,
    domains: Annotated[Optional[list[str]], typer.Option(
        "--domains", "-d", help="Built-in domains, comma-separated or repeated (default: the six "
        "default ones). Built-ins: code, docs, books, encyclopedia, quotes, latex, and the "
        "offline docstrings, unicode.")] = None,
    add: Annotated[Optional[list[str]], typer.Option(
        "--add", help="Your own domain, NAME=PATH: a text file or directory, or a tokenised "
        "binary as uint16:PATH (uint8/uint16/uint32) or PATH.npy. Repeatable.")] = None,
    max_mb: Annotated[float, typer.Option("--max-mb", help="Training text per domain, MB.")] = 4.0,
    val_mb: Annotated[float, typer.Option("--val-mb", help="Validation text per domain, MB.")] = 0.4,
    val_fraction: Annotated[float, typer.Option(
        "--val-fraction", help="Share of documents (by name hash) that go to validation.")] = 0.1,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Download / read, split, tokenise and cache the corpus (idempotent: cached domains are kept)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.data.corpus import prepare_corpus

    spec = _domains_arg(domains, add)
    kwargs = dict(max_bytes_per_domain=int(max_mb * 1e6), max_val_bytes=int(val_mb * 1e6),
                  val_fraction=val_fraction, force=force)
    if as_json:
        info = prepare_corpus(cache_dir, spec, **kwargs)
        typer.echo(json.dumps(info.to_dict(), indent=2))
        return
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), TextColumn("{task.fields[msg]}"),
                  TimeElapsedColumn()) as bar:
        tasks: dict[str, int] = {}

        def progress(domain: str, message: str, fraction: float) -> None:
            if domain not in tasks:
                tasks[domain] = bar.add_task(domain, total=1.0, msg="")
            bar.update(tasks[domain], completed=fraction, msg=message)

        info = prepare_corpus(cache_dir, spec, progress=progress, **kwargs)
    _print_table(info)


@data_app.command("mfms-weights")
def mfms_weights(
    source: Annotated[Path, typer.Argument(help="The published run folder (opt_algos/data_models/"
                                           "20250119_174726_j8mad2i5 of github.com/namkoong-lab/data-recipes) "
                                           "or its checkpoints/checkpoint_latest.pt.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write weights.json.")] = Path("weights.json"),
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Load a checkpoint torch's safe loader "
                                                "refuses (a pickle can run code: only for a file you trust).")] = False,
) -> None:
    """Convert the MFMS-BO paper's simulator checkpoint into the weights.json the mfms-sim runner reads.

    Then point mixplan at it: MIXPLAN_MFMS_SIM=weights.json, or path = "weights.json" under [runner]."""
    from engine.simulators.mfms_sim import ENV_VAR, convert_checkpoint

    path = convert_checkpoint(source, out, trust_pickle=trust_pickle)
    typer.echo(f"wrote {path}; use it with {ENV_VAR}={path} or path = \"{path}\" under [runner].")


@data_app.command("info")
def info(
    cache_dir: CacheOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Show the prepared corpus: domains, sources, versions, licences, sizes."""
    from engine.data.corpus import default_cache_dir, read_manifest

    manifest = read_manifest(cache_dir if cache_dir is not None else default_cache_dir())
    if as_json:
        typer.echo(json.dumps(manifest.to_dict(), indent=2))
        return
    _print_table(manifest)


def _print_table(info) -> None:
    from engine.cli.common import PlainTable, console, esc

    # a user's own domains name their files: cells and title are text, not markup
    table = PlainTable("domain", "package", "version", "licence", "train MB", "val MB", "docs (train/val)",
                       title=f"corpus at {esc(info.root)} ({info.total_bytes / 1e6:.1f} MB, vocab {info.vocab_size})")
    for d in info.domains.values():
        item = 1 if d.dtype == "uint8" else (2 if d.dtype == "uint16" else 4)
        table.add_row(d.name, d.package, d.version, d.licence, f"{d.train_tokens * item / 1e6:.2f}",
                      f"{d.val_tokens * item / 1e6:.2f}",
                      f"{d.train_docs:,}/{d.val_docs:,}" + (" (capped)" if d.capped else ""))
    console.print(table)
