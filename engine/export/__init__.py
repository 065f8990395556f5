"""Export the chosen mixture for the target scale, with provenance, in the formats trainers read.

>>> ex = from_optimum(store, "my-study")     # the recommended mixture; or a model: from_optimum(store, "my-study", "dmsl")
>>> ex = from_run(store, "my-study", run_id="r7")
>>> text = render(ex, "megatron", prefix_template="data/{domain}_text_document")
"""

from engine.export.formats import FORMATS, MIME, SUFFIX, parse_megatron, render, rounded
from engine.export.recommend import (
    DEFAULT_MODEL,
    KNOWN_MODELS,
    MixtureExport,
    Provenance,
    available_models,
    fit_study_model,
    from_optimum,
    from_recommendation,
    from_run,
    model_registry,
    optimum_at_target,
    runs_at_version,
    target_of,
)


def log_export(store, ex: MixtureExport, fmt: str, *, actor: str = "user", out: str | None = None) -> None:
    """Record the export in the study's event log (kind ``export``)."""
    detail = {"format": fmt, "weights": ex.weights, **ex.provenance.to_dict()}
    detail.pop("run_ids", None)
    if out:
        detail["out"] = out
    store.log_event(ex.provenance.study, "export", actor=actor, trial_id=ex.provenance.trial_id, detail=detail)


__all__ = [
    "DEFAULT_MODEL", "FORMATS", "KNOWN_MODELS", "MIME", "SUFFIX", "MixtureExport", "Provenance",
    "available_models", "fit_study_model", "from_optimum", "from_recommendation", "from_run", "log_export", "model_registry",
    "optimum_at_target", "parse_megatron", "render", "rounded", "runs_at_version", "target_of",
]
