"""Render an exported mixture in the formats trainers read, each carrying its provenance.

- ``json``: ``{"weights": {...}, "provenance": {...}}``
- ``yaml``: the same as YAML.
- ``megatron``: Megatron-LM ``--data-path`` blend, ``"w1 prefix1 w2 prefix2 ..."`` (provenance in
  ``#`` comment lines above it; the last line is the argument value).
- ``olmo``: an OLMo-core / Dolma-style source mixture YAML (``source_configs`` with
  ``target_ratio`` per source).
- ``hf``: a Python snippet for Hugging Face ``datasets.interleave_datasets`` with
  ``probabilities`` in domain order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import yaml

from engine.errors import ValidationError
from engine.export.recommend import MixtureExport

FORMATS = ("json", "yaml", "megatron", "olmo", "hf")
SUFFIX = {"json": ".json", "yaml": ".yaml", "megatron": ".txt", "olmo": ".yaml", "hf": ".py"}
MIME = {"json": "application/json", "yaml": "application/x-yaml", "megatron": "text/plain",
        "olmo": "application/x-yaml", "hf": "text/x-python"}
#: Weights are written with this many decimals; the last domain absorbs rounding so they sum to 1.
DECIMALS = 6
#: Where a data path goes when none was given (``--prefix``): a marker no trainer can mistake
#: for a real path, so a blend exported without paths fails loudly instead of reading
#: ``code/*.npy`` from wherever it runs.
PATH_PLACEHOLDER = "<path-to-{domain}>"
#: Said in every export whose paths are placeholders.
FILL_PATHS = ("data paths to fill: replace each <path-to-DOMAIN> with that domain's data, or export again "
              "with --prefix, e.g. --prefix 'data/{domain}_text_document' ({domain} is replaced)")


def rounded(weights: Mapping[str, float], decimals: int = DECIMALS) -> dict[str, float]:
    """Weights rounded to ``decimals`` that still sum to exactly 1 (at that precision)."""
    items = list(weights.items())
    total = sum(float(v) for _, v in items) or 1.0
    out = {k: round(float(v) / total, decimals) for k, v in items}
    if items:
        big = max(out, key=out.get)
        out[big] = round(out[big] + (1.0 - sum(out.values())), decimals)
    return out


def _comment_lines(ex: MixtureExport, prefix: str = "# ", *, fill: bool = False) -> list[str]:
    p = ex.provenance.to_dict()
    ids = p.pop("run_ids", [])
    lines = [f"mixplan {p.pop('mixplan_version')} mixture export, {p.pop('created_at')}"]
    if fill:
        lines.append(FILL_PATHS)
    lines += [f"{k}: {v}" for k, v in p.items()]
    if ids:
        shown = ", ".join(ids[:20]) + (f", ... ({len(ids) - 20} more)" if len(ids) > 20 else "")
        lines.append(f"run_ids: {shown}")
    return [prefix + line for line in lines]


def _prefix(domain: str, template: str) -> str:
    try:
        return template.format(domain=domain)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValidationError(f"bad prefix template {template!r} ({exc}).",
                              fix="use {domain} as the only placeholder, e.g. 'data/{domain}_text_document'.")


def render(ex: MixtureExport, fmt: str, *, prefix_template: str | None = None) -> str:
    """The export as text in ``fmt`` (one of :data:`FORMATS`). ``prefix_template`` names each
    domain's data path for megatron/olmo/hf (``{domain}`` is replaced); without one (None or
    empty) those formats carry :data:`PATH_PLACEHOLDER` paths and say so (:data:`FILL_PATHS`).
    json and yaml hold weights only."""
    if fmt not in FORMATS:
        raise ValidationError(f"unknown export format '{fmt}'.", fix=f"use one of {', '.join(FORMATS)}.")
    fill = not prefix_template
    if fill:
        prefix_template = PATH_PLACEHOLDER
    w = rounded(ex.weights)
    prov = ex.provenance.to_dict()
    if fmt == "json":
        return json.dumps({"weights": w, "provenance": prov}, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump({"weights": w, "provenance": prov}, sort_keys=False)
    if fmt == "megatron":
        blend = " ".join(f"{v:.{DECIMALS}f} {_prefix(d, prefix_template)}" for d, v in w.items() if v > 0)
        return "\n".join(_comment_lines(ex, fill=fill) + ["# pass as: --data-path <the line below>", blend]) + "\n"
    if fmt == "olmo":
        doc = {"dataset": {"source_mixture_config": {
            "max_tokens": int(prov["tokens"]) if prov.get("tokens") else None,
            "source_configs": [{"source_name": d, "target_ratio": v,
                                "paths": [_prefix(d, prefix_template) + ("" if fill else "/*.npy")]}
                               for d, v in w.items()],
        }}}
        if doc["dataset"]["source_mixture_config"]["max_tokens"] is None:
            del doc["dataset"]["source_mixture_config"]["max_tokens"]
        return "\n".join(_comment_lines(ex, fill=fill)) + "\n" + yaml.safe_dump(doc, sort_keys=False)
    # hf
    names = list(w)
    check = ["missing = [d for d, path in DATA_FILES.items() if path.startswith(\"<path-to-\")]",
             "if missing:",
             "    raise SystemExit(f\"fill DATA_FILES first (no data path for {', '.join(missing)})\")",
             ""] if fill else []
    lines = ['"""' + "\n".join(_comment_lines(ex, prefix="", fill=fill)) + '\n"""',
             "from datasets import interleave_datasets, load_dataset",
             "",
             f"PROBABILITIES = {json.dumps(w, indent=4)}",
             f"DATA_FILES = {json.dumps({d: _prefix(d, prefix_template) for d in names}, indent=4)}",
             "",
             *check,
             "datasets = [load_dataset(\"json\", data_files=DATA_FILES[d], split=\"train\", streaming=True)",
             "            for d in PROBABILITIES]",
             "mixed = interleave_datasets(datasets, probabilities=list(PROBABILITIES.values()), seed=0,",
             "                            stopping_strategy=\"all_exhausted\")",
             ""]
    return "\n".join(lines)


def parse_megatron(text: str) -> dict[str, float]:
    """The {prefix: weight} of a megatron export (its last non-comment line); for tests and checks."""
    line = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")][-1].split()
    return {line[i + 1]: float(line[i]) for i in range(0, len(line), 2)}
