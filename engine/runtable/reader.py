"""Reading and validating run tables (DESIGN.md contract 2), CSV or Parquet, and RegMix pairs.

:func:`read_run_table` turns one file (a run table) or two files (RegMix's mixture file and
loss file) into a clean run table (see :mod:`engine.runtable.schema`) plus
:class:`ImportNotes` saying what was inferred or repaired. Validation is complete and
all-or-nothing: the first problem found raises :class:`~engine.errors.ValidationError`
naming the file, where in it (for CSV the physical line, header = line 1, as an editor shows
it, blank lines and quoted line breaks counted; for Parquet the 1-based data row), the column,
and the fix. Nothing here touches the database.

Checks, in order: the file exists and is readable; it has data rows; no column is repeated
or unknown (the closest known name is suggested); the required columns exist (``run_id``,
``model_params``, ``tokens`` and/or ``steps``, two or more ``w_*``, one or more ``loss_*`` or
``metric_*``); every numeric cell parses (row, column and the bad value are named);
``model_params`` is a positive integer and constant within a run; ``steps`` are integers
>= 0, ``tokens`` >= 0, and every row has one of them; weights are >= 0 and sum to 1 (rows
off by at most ``RENORMALISE_TOLERANCE`` are renormalised and counted, rows within float noise
of 1 are kept exactly, larger deviations are errors that say by how much); weights are equal
on every row of a run; losses are finite; metrics and costs are finite where given; no
(run_id, steps) pair repeats (or (run_id, tokens) for rows without steps); and, when
``study_domains`` is given, the mixture domains match the study's.
"""

from __future__ import annotations

import csv
import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import ValidationError
from engine.runtable import schema as rt

DOMAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
MISSING_TOKENS = frozenset({"", "nan", "-nan", "na", "n/a", "null", "none", "#n/a"})
_NA_SPELLINGS = sorted({v for t in MISSING_TOKENS for v in (t, t.upper(), t.capitalize())} | {"NaN", "-NaN"})
#: pandas < 3 parses floats exactly only when asked (pandas 3 always does, and deprecates the option).
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
#: Deviations of sum(w) from 1 up to this are float noise: such rows are kept bit for bit (not
#: rescaled, not counted), so that exporting a study and importing it again changes nothing.
_NOISE = 1e-9
_FORMAT_HELP = ("a run table has columns run_id, model_params, tokens and/or steps, w_<domain>..., "
                "loss_<domain>..., optional metric_<name>... and cost (see the README).")

#: Where a cell came from: (row position in the table, column) -> (file, 1-based data row or
#: None, physical line or None, column name as the file spells it). Exactly one of row and line
#: is given: the line for CSV files, the data row for Parquet (which has no lines).
Locator = Callable[[int, str], tuple[str, int | None, int | None, str]]


def _pos(row: int | None, line: int | None) -> str:
    """'line N' or 'row N', as the location is known (for messages that point at a second row)."""
    return f"line {line}" if line is not None else f"row {row}"


@dataclass(frozen=True)
class ImportNotes:
    """What :func:`read_run_table` read, inferred and repaired (for the CLI and the app to show)."""

    files: tuple[str, ...]
    format: str  # "csv", "parquet" or "regmix"
    runs: int
    checkpoints: int
    renormalised_rows: int = 0
    max_sum_deviation: float = 0.0
    inferred: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    run_prefix: str = ""  # put in front of every run id of the file (see read_run_table)
    #: Where each row of the clean table came from (for errors found later, e.g. by the store).
    locate: Locator | None = field(default=None, compare=False, repr=False)


# ---- file access ---------------------------------------------------------------------------
PARQUET_MAGIC = b"PAR1"


def _sniff(path: Path) -> tuple[bool, str | None]:
    """(read as Parquet?, a note when the name says otherwise). The bytes decide, not the
    name: Parquet files start (and end) with ``PAR1``, so a Parquet file saved as ``.csv`` is
    read as Parquet, and text saved as ``.parquet`` as CSV, each with a note saying so (a
    message about CSV syntax for Parquet bytes, or the reverse, would mislead)."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    parquet_bytes = head[:4] == PARQUET_MAGIC
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq") and not parquet_bytes:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # not merely a character cut at the 4096th byte
                return True, None  # neither Parquet nor text: the Parquet reader says what is wrong
        return False, (f"{path.name} holds text, not Parquet (a Parquet file starts with the bytes PAR1): "
                       "read it as CSV; rename it to .csv")
    if suffix not in (".parquet", ".pq") and parquet_bytes:
        return True, (f"{path.name} holds Parquet data, not CSV text (its bytes start with PAR1): read it as "
                      "Parquet; rename it to .parquet")
    return parquet_bytes, None


def _delimiter_hint(header_line: str, name: str) -> None:
    """Refuse a semicolon- or tab-separated file with a hint, rather than let its whole header
    be read as one unknown column (``'run_id;model_params;...'``)."""
    for sep, what in ((";", "semicolons"), ("\t", "tabs")):
        if header_line.count(sep) >= 2 and header_line.count(sep) > header_line.count(","):
            raise ValidationError(
                f"the header is separated by {what}, not commas ({header_line.strip()[:60]!r}); mixplan reads "
                "comma-separated files.", file=name,
                fix="save the table as comma-separated CSV with '.' as the decimal point (e.g. pandas "
                    "df.to_csv(path, index=False)), or as Parquet.")


def _csv_lines(path: Path, n_rows: int) -> np.ndarray | None:
    """The physical line (1-based, header = 1) on which each data row of a CSV starts.

    pandas numbers rows after skipping blank lines (empty or only whitespace), and a quoted cell
    can span lines, so its row numbers are not what an editor shows; this reads the file once
    more with :mod:`csv` and skips the same lines. None where the two disagree on the number of
    rows (then errors fall back to data rows)."""
    starts: list[int] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        prev = 0
        for k, rec in enumerate(reader):
            start, prev = prev + 1, reader.line_num
            if k == 0:
                continue  # the header
            if not rec or (len(rec) == 1 and rec[0] != "" and not rec[0].strip()):
                continue  # a blank line, which pandas skips
            starts.append(start)
    return np.asarray(starts, dtype=np.int64) if len(starts) == n_rows else None


def _read_raw(path: Path) -> tuple[pd.DataFrame, str, np.ndarray | None, str | None]:
    """The file as a frame, its format, for CSV the physical line of each row (see
    :func:`_csv_lines`), and a note where the file's name and content disagree (see
    :func:`_sniff`). CSV cells stay strings so bad cells can be reported verbatim."""
    name = str(path)
    if not path.exists():
        raise ValidationError("file not found.", file=name, fix="check the path.")
    if path.is_dir():
        raise ValidationError("is a directory, not a run table.", file=name, fix="give a CSV or Parquet file.")
    if path.stat().st_size == 0:
        raise ValidationError("the file is empty.", file=name,
                              fix=f"export the runs again; {_FORMAT_HELP}")
    try:
        parquet, note = _sniff(path)
    except OSError as exc:
        raise ValidationError(f"cannot read the file ({exc.strerror or exc}).", file=name,
                              fix="check the path and its permissions.") from exc
    if parquet:
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types
            raise ValidationError(f"not a readable Parquet file ({exc}).", file=name,
                                  fix="write it again with pandas/pyarrow, or give a CSV.") from exc
        cols = [str(c) for c in df.columns]
        _check_repeated(cols, name)
        df.columns = cols
        return df.reset_index(drop=True), "parquet", None, note
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            first_line = fh.readline()
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except UnicodeDecodeError as exc:
        raise ValidationError("not a UTF-8 text (CSV) file, nor a Parquet file.", file=name,
                              fix="give a CSV (UTF-8) or a Parquet file.") from exc
    _delimiter_hint(first_line, name)
    header = [h.strip() for h in header]
    if not any(header):
        raise ValidationError("the file has no header row.", file=name, fix=_FORMAT_HELP)
    _check_repeated(header, name)
    # Numbers are parsed by the C reader (exact in pandas 3); a column holding a bad cell stays
    # text and is reported cell by cell in _validate. Ids stay text ('007' is not 7).
    ids = {c for c in header if c in ("run_id", "index")}
    na = {c: _NA_SPELLINGS for c in header if c not in ids}
    try:
        df = pd.read_csv(path, dtype={c: str for c in ids}, keep_default_na=False, na_values=na,
                         skipinitialspace=True, encoding="utf-8-sig", **_EXACT_FLOATS)
    except pd.errors.ParserError as exc:
        raise ValidationError(f"not a well-formed CSV ({exc}).", file=name,
                              fix="every row needs as many cells as the header.") from exc
    df.columns = header
    try:
        lines = _csv_lines(path, len(df))
    except (csv.Error, UnicodeDecodeError):
        lines = None
    return df, "csv", lines, note


def _check_repeated(cols: Sequence[str], name: str) -> None:
    seen: set[str] = set()
    for c in cols:
        if c in seen:
            raise ValidationError("this column appears twice.", file=name, column=c,
                                  fix="remove or rename one of the two.")
        seen.add(c)


def _file_size_check(df: pd.DataFrame, name: str) -> None:
    if len(df) == 0:
        raise ValidationError("the file has a header but no data rows.", file=name,
                              fix="a run table needs one row per checkpoint.")


# ---- numeric parsing -----------------------------------------------------------------------
def _numeric(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as float64, missing mask, bad mask) of one column.

    Missing: empty cells and NaN spellings. Bad: anything else that is not a number."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        vals = np.full(len(raw), np.nan)
        return vals, np.zeros(len(raw), bool), np.ones(len(raw), bool)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        vals = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
        missing = np.isnan(vals)
        return vals, missing, np.zeros(len(raw), bool)
    s = raw.astype("string").str.strip()
    missing = (s.isna() | s.str.lower().isin(MISSING_TOKENS)).to_numpy(dtype=bool)
    vals = pd.to_numeric(s.mask(pd.Series(missing, index=s.index)), errors="coerce")
    vals = vals.astype("float64").to_numpy(na_value=np.nan)
    bad = np.isnan(vals) & ~missing
    return vals, missing, bad


def _first(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if len(idx) else None


def _suggest(col: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(col, list(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'? ({_FORMAT_HELP})"
    return f"rename or remove it; {_FORMAT_HELP}"


# ---- the validator -------------------------------------------------------------------------
def _validate(raw: pd.DataFrame, where: Locator, files: tuple[str, ...],
              study_domains: Sequence[str] | None, fmt: str) -> tuple[pd.DataFrame, ImportNotes]:
    """Validate a raw run table (CSV strings or Parquet values) and return the clean one."""
    cols = list(raw.columns)
    file0 = files[0]

    def err(msg: str, row: int | None = None, column: str | None = None, fix: str | None = None):
        if row is not None and column is not None:
            f, r, ln, c = where(row, column)
            return ValidationError(msg, file=f, row=r, line=ln, column=c, fix=fix)
        if column is not None:
            f, _, _, c = where(0, column)
            return ValidationError(msg, file=f, column=c, fix=fix)
        return ValidationError(msg, file=file0, fix=fix)

    def at(row: int, column: str) -> str:
        return _pos(*where(row, column)[1:3])

    # columns: unknown, malformed, missing
    wcols = [c for c in cols if c.startswith(rt.WEIGHT_PREFIX)]
    lcols = [c for c in cols if c.startswith(rt.LOSS_PREFIX)]
    mcols = [c for c in cols if c.startswith(rt.METRIC_PREFIX)]
    domains = [c[len(rt.WEIGHT_PREFIX):] for c in wcols]
    names = {c[len(rt.WEIGHT_PREFIX):] for c in wcols} | {c[len(rt.LOSS_PREFIX):] for c in lcols}
    known = list(rt.CORE_COLUMNS) + [p + d for d in sorted(names) for p in (rt.WEIGHT_PREFIX, rt.LOSS_PREFIX)]
    for c in cols:
        if c in rt.CORE_COLUMNS or c in wcols or c in lcols or c in mcols:
            continue
        raise err("unknown column.", column=c, fix=_suggest(c, known))
    for c in wcols + lcols + mcols:
        prefix = next(p for p in (rt.WEIGHT_PREFIX, rt.LOSS_PREFIX, rt.METRIC_PREFIX) if c.startswith(p))
        if not DOMAIN_RE.match(c[len(prefix):]):
            raise err(f"'{c[len(prefix):]}' is not a usable name after '{prefix}'.", column=c,
                      fix="use letters, digits, '_', '-' or '.', starting with a letter or digit.")
    for req in ("run_id", "model_params"):
        if req not in cols:
            raise err(f"missing column '{req}'.", fix=_suggest(req, cols) if difflib.get_close_matches(
                req, cols, n=1, cutoff=0.6) else f"add it; {_FORMAT_HELP}")
    if "steps" not in cols and "tokens" not in cols:
        raise err("missing column 'steps' or 'tokens': where along the run each checkpoint was taken.",
                  fix=f"add a steps and/or tokens column; {_FORMAT_HELP}")
    if len(wcols) < 2:
        raise err(f"needs at least two mixture weight columns w_<domain>, found {wcols or 'none'}.",
                  fix=f"add one w_<domain> column per training domain; {_FORMAT_HELP}")
    if not lcols and not mcols:
        raise err("no loss_<domain> (or metric_<name>) column: nothing was measured.",
                  fix=f"add the validation losses as loss_<domain> columns; {_FORMAT_HELP}")
    if study_domains is not None:
        want = list(study_domains)
        missing = [d for d in want if d not in domains]
        extra = [d for d in domains if d not in want]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks {', '.join(rt.WEIGHT_PREFIX + d for d in missing)}")
            if extra:
                parts.append(f"has {', '.join(rt.WEIGHT_PREFIX + d for d in extra)} that the study does not")
            col = (rt.WEIGHT_PREFIX + extra[0]) if extra else None
            raise err(f"the mixture domains disagree with the study ({' and '.join(parts)}); the study's "
                      f"domains are {want}.", column=col,
                      fix="import into a study with these domains, or under a new --study name.")

    n = len(raw)
    out: dict[str, object] = {}

    # run_id
    rid = raw["run_id"]
    if pd.api.types.is_float_dtype(rid.dtype):
        v = rid.to_numpy(dtype=float)
        miss = np.isnan(v)
        if _first(miss) is None and np.all(v == np.round(v)):
            rid = pd.Series(v.astype("int64"), index=rid.index)
    rid_s = rid.astype("string").str.strip()
    miss = (rid_s.isna() | (rid_s == "")).to_numpy(dtype=bool)
    if (i := _first(miss)) is not None:
        raise err("run_id is empty.", i, "run_id", fix="give every row the id of its run.")
    run_id = rid_s.astype(str).to_numpy(dtype=object)
    if (bad_id := rt.first_unsafe_run_id(run_id)) is not None:
        i, problem = bad_id
        raise err(f"run_id {run_id[i]!r} {problem}; a run id names the run's folder.", i, "run_id",
                  fix=rt.RUN_ID_FIX)

    # numbers
    parsed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in cols:
        if c == "run_id":
            continue
        vals, missing, bad = _numeric(raw[c])
        if (i := _first(bad)) is not None:
            cell = raw[c].iloc[i]
            raise err(f"{cell!r} is not a number.", i, c, fix="put a number in this cell.")
        parsed[c] = (vals, missing)

    # model_params
    mp, mp_miss = parsed["model_params"]
    if (i := _first(mp_miss)) is not None:
        raise err("model_params is empty.", i, "model_params", fix="give the model's parameter count.")
    bad = ~np.isfinite(mp) | (mp <= 0) | (mp != np.round(mp)) | (mp >= 2.0**63)
    if (i := _first(bad)) is not None:
        raise err(f"model_params must be a positive integer, got {mp[i]:g}.", i, "model_params",
                  fix="give the parameter count as a whole number, e.g. 60000000.")
    mp_i = mp.astype("int64")

    # steps / tokens
    steps_i = None
    if "steps" in parsed:
        st, st_miss = parsed["steps"]
        bad = ~st_miss & (~np.isfinite(st) | (st < 0) | (st != np.round(st)) | (st >= 2.0**63))
        if (i := _first(bad)) is not None:
            raise err(f"steps must be a whole number from 0 to {2**63 - 1:.3g}, got {st[i]:g}.", i, "steps",
                      fix="give the optimiser step of the checkpoint.")
        steps_i = pd.array(np.where(st_miss, 0, st).astype("int64"), dtype="Int64")
        steps_i[st_miss] = pd.NA
    tokens = None
    if "tokens" in parsed:
        tk, tk_miss = parsed["tokens"]
        bad = ~tk_miss & (~np.isfinite(tk) | (tk < 0))
        if (i := _first(bad)) is not None:
            raise err(f"tokens must be a finite number >= 0, got {tk[i]:g}.", i, "tokens",
                      fix="give the tokens seen at the checkpoint.")
        tokens = tk
    has_steps = np.zeros(n, bool) if steps_i is None else ~parsed["steps"][1]
    has_tokens = np.zeros(n, bool) if tokens is None else ~parsed["tokens"][1]
    if (i := _first(~has_steps & ~has_tokens)) is not None:
        col = "steps" if "steps" in cols else "tokens"
        raise err("the row has neither steps nor tokens.", i, col,
                  fix="give where along the run the checkpoint was taken.")

    # weights
    W = np.column_stack([parsed[c][0] for c in wcols])
    Wm = np.column_stack([parsed[c][1] for c in wcols])
    if Wm.any():
        i, j = (int(a[0]) for a in np.nonzero(Wm))
        raise err("the weight is empty.", i, wcols[j], fix="give every domain a weight (0 is allowed).")
    bad = ~np.isfinite(W) | (W < 0)
    if bad.any():
        i, j = (int(a[0]) for a in np.nonzero(bad))
        raise err(f"the weight is {W[i, j]:g}; weights must be finite and >= 0.", i, wcols[j],
                  fix="fix the weight (0 is allowed).")
    total = W.sum(axis=1)
    dev = total - 1.0
    big = np.abs(dev) > rt.RENORMALISE_TOLERANCE
    if (i := _first(big)) is not None:
        raise err(f"the weights {', '.join(wcols)} sum to {total[i]:.6g}, off 1 by {dev[i]:+.4g} (more than "
                  f"the {rt.RENORMALISE_TOLERANCE:g} that is renormalised).", i, wcols[0],
                  fix="make the row's weights sum to 1.")
    # only rows off by more than float noise are rescaled: dividing a row that already sums to 1
    # by its float sum moves its last bits, and a re-import would then differ from the export
    off = np.abs(dev) > _NOISE
    touched = int(np.sum(off))
    Wn = np.where(off[:, None], W / total[:, None], W)

    # one run, one mixture, one size
    codes, uniques = pd.factorize(pd.Series(run_id), sort=False)
    first_row = np.full(len(uniques), -1, dtype=np.int64)
    order = np.arange(n)
    first_row[codes[::-1]] = order[::-1]  # first occurrence of each run
    ref = first_row[codes]
    diff_w = np.abs(W - W[ref]) > 1e-9
    if diff_w.any():
        i, j = (int(a[0]) for a in np.nonzero(diff_w))
        raise err(f"run '{run_id[i]}' has weight {W[i, j]:g} here but {W[ref[i], j]:g} at "
                  f"{at(int(ref[i]), wcols[j])}; a run has one mixture.", i, wcols[j],
                  fix="give every row of a run the same weights, or a new run_id.")
    if (i := _first(mp_i != mp_i[ref])) is not None:
        raise err(f"run '{run_id[i]}' has model_params {mp_i[i]} here but {mp_i[ref[i]]} at "
                  f"{at(int(ref[i]), 'model_params')}.", i,
                  "model_params", fix="a run has one model size: give the rows a new run_id or fix the size.")

    # losses, metrics, cost
    for c in lcols:
        v, miss = parsed[c]
        if (i := _first(miss | ~np.isfinite(v))) is not None:
            what = "missing (empty or NaN)" if miss[i] else f"{v[i]} (not finite)"
            raise err(f"the loss is {what}.", i, c,
                      fix="give a finite validation loss, or drop the checkpoint (or the column).")
        if (i := _first(v < 0)) is not None:
            raise err(f"the loss is {v[i]:g}; a validation loss (cross-entropy) is >= 0.", i, c,
                      fix="give the loss itself (not its negative, not a difference); a score where higher is "
                          "better goes in a metric_<name> column.")
    for c in mcols + (["cost"] if "cost" in parsed else []):
        v, miss = parsed[c]
        if (i := _first(~miss & ~np.isfinite(v))) is not None:
            raise err(f"the value is {v[i]} (not finite).", i, c, fix="give a finite number or leave it empty.")
    if "cost" in parsed:
        v, miss = parsed["cost"]
        if (i := _first(~miss & (v < 0))) is not None:
            raise err(f"cost {v[i]:g} < 0.", i, "cost", fix="costs are >= 0.")

    # duplicate checkpoints
    key_df = pd.DataFrame({"run": codes})
    if steps_i is not None:
        key_df["k"] = np.where(has_steps, np.asarray(steps_i.fillna(0), dtype=float), np.nan)
    else:
        key_df["k"] = np.nan
    if tokens is not None:
        key_df["k2"] = np.where(has_steps, np.nan, tokens)
    else:
        key_df["k2"] = np.nan
    dup = key_df.duplicated(keep=False).to_numpy()
    if dup.any():
        dups = np.flatnonzero(dup)
        i = int(dups[0])
        same = [j for j in dups if key_df.iloc[j].equals(key_df.iloc[i]) and j != i]
        later = int(same[0]) if same else int(dups[1])
        kcol = "steps" if has_steps[later] else "tokens"
        kval = steps_i[later] if kcol == "steps" else tokens[later]
        (_, r0, l0, _), (_, r1, l1, _) = where(i, kcol), where(later, kcol)
        both = f"lines {l0} and {l1}" if l0 is not None and l1 is not None else f"rows {r0} and {r1}"
        raise err(f"run '{run_id[later]}' has two checkpoints at {kcol} = {kval:g} ({both}).", later, kcol,
                  fix=f"keep one row per ({'run_id, ' + kcol}), or give the runs different run_ids.")

    # the clean table
    out["run_id"] = run_id
    out["model_params"] = mp_i
    if tokens is not None:
        out["tokens"] = tokens
    if steps_i is not None:
        out["steps"] = steps_i
    for j, c in enumerate(wcols):
        out[c] = Wn[:, j]
    for c in lcols + mcols:
        out[c] = parsed[c][0]
    if "cost" in parsed:
        out["cost"] = parsed["cost"][0]
    df = pd.DataFrame(out)
    df["run_id"] = df["run_id"].astype(object)
    notes = ImportNotes(files=files, format=fmt, runs=len(uniques), checkpoints=n, renormalised_rows=touched,
                        max_sum_deviation=float(np.max(np.abs(dev))) if n else 0.0)
    return df, notes


def validate_results(frame: pd.DataFrame, source: str) -> None:
    """Check a runner's checkpoints exactly as an import checks a file, before the store keeps
    them: ``frame`` is a run table of one run (one row per checkpoint, in the order reported;
    the trial's run_id, model_params and weights on every row). Why one validator: a result
    that an import would refuse (a NaN or negative loss, a name that is no identifier, steps
    beyond int64, a repeated checkpoint) must not reach a study by the runner's door either.
    Raises :class:`~engine.errors.ValidationError` naming ``source``, the row (the checkpoint's
    position) and the column."""

    def where(i: int, col: str) -> tuple[str, int | None, int | None, str]:
        return source, i + 1, None, col

    _validate(frame.reset_index(drop=True), where, (source,), None, "result")


# ---- RegMix --------------------------------------------------------------------------------
REGMIX_WEIGHT_RE = re.compile(r"^train_(?:the_pile_)?(.+)$")
REGMIX_LOSS_RE = re.compile(r"^metric/(?:the_pile_)?(.+?)_val_loss$")
_SIZE_RE = re.compile(r"_(\d+(?:\.\d+)?)([mMbB])(?=[._]|$)")
#: Tokens each RegMix model size was trained on (the paper: 1B tokens for the small proxy
#: models, 25B tokens for the 1B models).
REGMIX_TOKENS = {1_000_000_000: 25e9}
REGMIX_DEFAULT_TOKENS = 1e9


def regmix_kind(columns: Sequence[str]) -> str | None:
    """'mixture' or 'loss' for a RegMix file's columns, else None."""
    rest = [c for c in columns if c != "index"]
    if "index" not in columns or not rest:
        return None
    if all(REGMIX_WEIGHT_RE.match(c) for c in rest):
        return "mixture"
    if all(REGMIX_LOSS_RE.match(c) for c in rest):
        return "loss"
    if sum(bool(REGMIX_WEIGHT_RE.match(c)) for c in rest) > len(rest) / 2:
        return "mixture"
    if sum(bool(REGMIX_LOSS_RE.match(c)) for c in rest) > len(rest) / 2:
        return "loss"
    return None


def size_label(model_params: int) -> str:
    """A model size as people write it: 1000000 -> '1m', 60000000 -> '60m', 10**9 -> '1b'."""
    n = int(model_params)
    for div, unit in ((10**12, "t"), (10**9, "b"), (10**6, "m"), (10**3, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def regmix_run_prefix(mixture_file: str | Path, model_params: int) -> str:
    """The default run-id prefix of a RegMix pair: ``<split>-<size>-``.

    Every RegMix file numbers its runs from 0 or 1, so the bare ``index`` of the 1M train
    file, the 60M test file and the 1B test file clash in one study; the size keeps sizes apart
    and the split (``train``/``test``, the first word of RegMix's file names) keeps a size's
    train and test runs apart: ``train-1m-1``, ``test-1m-1``, ``test-60m-1``, ``test-1b-0``.
    A file whose name starts with neither gets ``<size>-`` only."""
    split = Path(mixture_file).name.split("_", 1)[0].lower()
    return "-".join(([split] if split in ("train", "test") else []) + [size_label(model_params)]) + "-"


def size_from_name(name: str) -> int | None:
    """Model size from a RegMix file name: ``_1m`` -> 1e6, ``_60m`` -> 6e7, ``_1B`` -> 1e9."""
    m = _SIZE_RE.search(Path(name).stem + ".")
    if not m:
        return None
    return int(round(float(m.group(1)) * (1e6 if m.group(2).lower() == "m" else 1e9)))


def _row_or_line(lines: np.ndarray | None, i: int) -> dict[str, int]:
    """The ValidationError location of data row ``i`` (0-based) of a file: its line, else its row."""
    return {"line": int(lines[i])} if lines is not None else {"row": i + 1}


def _regmix(paths: Sequence[Path], raws: Sequence[pd.DataFrame], lines: Sequence[np.ndarray | None], *,
            model_params: int | None, tokens: float | None, study_domains: Sequence[str] | None,
            run_prefix: str | None) -> tuple[pd.DataFrame, ImportNotes]:
    kinds = [regmix_kind(list(r.columns)) for r in raws]
    if sorted(k or "" for k in kinds) != ["loss", "mixture"]:
        raise ValidationError(
            f"two files are read as a RegMix pair (a mixture file with index, train_the_pile_<domain>... and a "
            f"loss file with index, metric/the_pile_<domain>_val_loss...), but these look like "
            f"{', '.join(k or 'neither' for k in kinds)}.", file=", ".join(map(str, paths)),
            fix="give one RegMix mixture file and its loss file, or import run tables one at a time.")
    mi, li = kinds.index("mixture"), kinds.index("loss")
    mpath, lpath, mraw, lraw = paths[mi], paths[li], raws[mi], raws[li]
    mlines, llines = lines[mi], lines[li]
    for p, raw, rx in ((mpath, mraw, REGMIX_WEIGHT_RE), (lpath, lraw, REGMIX_LOSS_RE)):
        _file_size_check(raw, str(p))
        for c in raw.columns:
            if c != "index" and not rx.match(c):
                good = [x for x in raw.columns if x != "index" and rx.match(x)]
                raise ValidationError("unknown column in a RegMix file.", file=str(p), column=c,
                                      fix=_suggest(c, good) if difflib.get_close_matches(c, good, n=1)
                                      else "remove it.")
    inferred: dict[str, float] = {}
    notes: list[str] = []
    if model_params is None:
        sizes = {size_from_name(str(p)) for p in (mpath, lpath)}
        if len(sizes) != 1 or None in sizes:
            raise ValidationError("cannot tell the RegMix models' size from the file names "
                                  f"({mpath.name}, {lpath.name}).", file=str(mpath),
                                  fix="pass --model-params N (and --tokens T).")
        model_params = sizes.pop()
        inferred["model_params"] = float(model_params)
        notes.append(f"model_params = {model_params:,} inferred from the file name")
    if tokens is None:
        tokens = REGMIX_TOKENS.get(int(model_params), REGMIX_DEFAULT_TOKENS)
        inferred["tokens"] = float(tokens)
        notes.append(f"tokens = {tokens:g} assumed (RegMix trains 1M/60M models on 1B tokens, 1B models on 25B)")
    if run_prefix is None:
        run_prefix = regmix_run_prefix(mpath, int(model_params))
    notes.append(f"run ids are '{run_prefix}<index>' (--run-prefix to choose another prefix)")

    def index_of(raw: pd.DataFrame, p: Path, ln: np.ndarray | None) -> pd.Series:
        s = raw["index"].astype("string").str.strip()
        miss = (s.isna() | (s == "")).to_numpy(dtype=bool)
        if (i := _first(miss)) is not None:
            raise ValidationError("the index is empty.", file=str(p), **_row_or_line(ln, i), column="index",
                                  fix="every row needs the index of its run.")
        dup = s.duplicated().to_numpy()
        if (i := _first(dup)) is not None:
            raise ValidationError(f"index {s.iloc[i]} appears twice.", file=str(p), **_row_or_line(ln, i),
                                  column="index", fix="each run (index) has one row in a RegMix file.")
        return s.astype(str)

    midx, lidx = index_of(mraw, mpath, mlines), index_of(lraw, lpath, llines)
    mrow = pd.Series(np.arange(len(mraw)), index=midx.to_numpy())
    orphan = ~lidx.isin(set(midx)).to_numpy()
    if (i := _first(orphan)) is not None:
        raise ValidationError(f"index {lidx.iloc[i]} has losses but no mixture in {mpath.name}.", file=str(lpath),
                              **_row_or_line(llines, i), column="index", fix="give the matching mixture file.")
    unmatched = int((~midx.isin(set(lidx))).sum())
    if unmatched:
        notes.append(f"{unmatched} mixture row(s) without losses were skipped")
    m_at = mrow.loc[lidx.to_numpy()].to_numpy()  # mixture row of each loss row

    wmap = {c: rt.WEIGHT_PREFIX + REGMIX_WEIGHT_RE.match(c).group(1) for c in mraw.columns if c != "index"}
    lmap = {c: rt.LOSS_PREFIX + REGMIX_LOSS_RE.match(c).group(1) for c in lraw.columns if c != "index"}
    back = {v: k for k, v in {**wmap, **lmap}.items()}
    table = pd.DataFrame({"run_id": lidx.to_numpy()})
    table["model_params"] = np.full(len(table), int(model_params), dtype="int64")
    table["tokens"] = np.full(len(table), float(tokens))
    for c, new in wmap.items():
        table[new] = mraw[c].to_numpy()[m_at]
    for c, new in lmap.items():
        table[new] = lraw[c].to_numpy()

    def in_file(p: Path, ln: np.ndarray | None, i: int, col: str) -> tuple[str, int | None, int | None, str]:
        return str(p), None if ln is not None else i + 1, None if ln is None else int(ln[i]), col

    def where(i: int, col: str) -> tuple[str, int | None, int | None, str]:
        if col in ("run_id",):
            return in_file(lpath, llines, i, "index")
        if col.startswith(rt.WEIGHT_PREFIX):
            return in_file(mpath, mlines, int(m_at[i]), back.get(col, col))
        if col.startswith(rt.LOSS_PREFIX):
            return in_file(lpath, llines, i, back.get(col, col))
        return in_file(mpath, mlines, int(m_at[i]) if len(m_at) else i, col)

    df, base = _validate(table, where, (str(mpath), str(lpath)), study_domains, "regmix")
    df["run_id"] = _prefixed(df["run_id"], run_prefix)
    notes_out = ImportNotes(files=base.files, format="regmix", runs=base.runs, checkpoints=base.checkpoints,
                            renormalised_rows=base.renormalised_rows, max_sum_deviation=base.max_sum_deviation,
                            inferred=inferred, notes=tuple(notes), run_prefix=run_prefix, locate=where)
    return df, notes_out


def _prefixed(run_ids: pd.Series, prefix: str) -> pd.Series:
    """The run ids with ``prefix`` in front (validation quoted them as the file has them)."""
    return run_ids if not prefix else (prefix + run_ids.astype(str)).astype(object)


# ---- entry point ---------------------------------------------------------------------------
def read_run_table(path_or_paths: str | Path | Sequence[str | Path], *, study_domains: Sequence[str] | None = None,
                   model_params: int | None = None, tokens: float | None = None,
                   run_prefix: str | None = None) -> tuple[pd.DataFrame, ImportNotes]:
    """Read, validate and clean a run table, or a RegMix (mixture file, loss file) pair.

    ``study_domains``: the mixture domains of the study the table goes into (an error names
    the columns that disagree). ``model_params`` / ``tokens``: for RegMix files, which carry
    neither; by default the size comes from the file name (``_1m`` -> 1e6, ``_60m`` -> 6e7,
    ``_1B`` -> 1e9) and tokens are 1e9 (25e9 for 1B models), as in the RegMix paper.
    ``run_prefix`` goes in front of every run id, so that files numbering their runs alike can
    share a study. Default: none for a run table; for a RegMix pair ``<split>-<size>-`` (see
    :func:`regmix_run_prefix`: ``train-1m-1``, ``test-60m-1``), ``""`` for the bare index.

    Returns the clean table (columns in the order run_id, model_params, tokens, steps, w_*,
    loss_*, metric_*, cost; weights renormalised) and :class:`ImportNotes`. Raises
    :class:`~engine.errors.ValidationError` at the first problem, naming file, line (CSV) or data
    row (Parquet), column, fix. ``ImportNotes.locate`` maps a row of the clean table back to its
    file, line and column, for errors found later (the store's run-id clash).
    """
    paths = [Path(path_or_paths)] if isinstance(path_or_paths, (str, Path)) else [Path(p) for p in path_or_paths]
    if not paths or len(paths) > 2:
        raise ValidationError(f"give one run table or a RegMix pair (two files), got {len(paths)} file(s).")
    if model_params is not None and (isinstance(model_params, bool) or not isinstance(model_params, (int, float))
                                     or not math.isfinite(model_params) or int(model_params) != model_params
                                     or not 0 < model_params < 2**63):
        raise ValidationError(f"--model-params must be a positive integer, got {model_params!r}.",
                              fix="give the parameter count as a whole number, e.g. 60000000.")
    if tokens is not None and (not math.isfinite(float(tokens)) or tokens <= 0):
        raise ValidationError(f"--tokens must be a positive number, got {tokens!r}.")
    if run_prefix is not None and (not isinstance(run_prefix, str) or run_prefix != run_prefix.strip()
                                   or not run_prefix.isprintable()):
        raise ValidationError(f"--run-prefix {run_prefix!r} starts or ends with white space or holds a control "
                              "character; run ids are read back stripped, so it would not survive an export.",
                              fix="give a prefix like 'train-1m-' (letters, digits, '-', '_', '.').")
    if run_prefix and ("/" in run_prefix or "\\" in run_prefix):
        raise ValidationError(f"--run-prefix {run_prefix!r} would make run ids that are paths; a run id names "
                              "the run's folder.", fix="give a prefix like 'train-1m-' (no '/' or '\\').")
    raws, lines, sniffed = [], [], []
    fmt = "csv"
    for p in paths:
        raw, fmt, ln, note = _read_raw(p)
        raws.append(raw)
        lines.append(ln)
        sniffed.extend([note] if note else [])
    if len(paths) == 2:
        df, notes = _regmix(paths, raws, lines, model_params=None if model_params is None else int(model_params),
                            tokens=tokens, study_domains=study_domains, run_prefix=run_prefix)
        return df, replace(notes, notes=tuple(sniffed) + notes.notes)
    raw, path, ln = raws[0], paths[0], lines[0]
    kind = regmix_kind(list(raw.columns))
    if kind is not None:
        other = "loss" if kind == "mixture" else "mixture"
        raise ValidationError(f"this is a RegMix {kind} file; it needs its {other} file.", file=str(path),
                              fix="pass both files: mixplan import MIXTURE.csv LOSS.csv --study NAME.")
    _file_size_check(raw, str(path))
    if model_params is not None and "model_params" not in raw.columns:
        raw = raw.assign(model_params=int(model_params))
    if tokens is not None and "tokens" not in raw.columns:
        raw = raw.assign(tokens=float(tokens))

    def where(i: int, col: str) -> tuple[str, int | None, int | None, str]:
        return str(path), None if ln is not None else i + 1, None if ln is None else int(ln[i]), col

    df, notes = _validate(raw, where, (str(path),), study_domains, fmt)
    notes = replace(notes, notes=tuple(sniffed) + notes.notes)
    if run_prefix:
        df["run_id"] = _prefixed(df["run_id"], run_prefix)
        notes = replace(notes, notes=notes.notes + (f"run ids prefixed with '{run_prefix}'",))
    return df, replace(notes, run_prefix=run_prefix or "", locate=where)


def write_run_table(df: pd.DataFrame, path: str | Path, *, overwrite: bool = True,
                    protect: Sequence[str | Path] = ()) -> Path:
    """Write a run table as Parquet (``.parquet``/``.pq``) or CSV (anything else), atomically
    (see :func:`engine.outfile.write_out_file`: never one of ``protect``, an existing file only
    with ``overwrite``)."""
    from engine.outfile import write_out_file

    p = Path(path)
    parquet = p.suffix.lower() in (".parquet", ".pq")

    def write(tmp: Path) -> None:
        if parquet:
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)

    return write_out_file(p, write, overwrite=overwrite, protect=protect, example="runs.csv")
