"""The built-in GPT trainer (torch): a ladder of model sizes, mixture-weighted batches,
per-domain validation losses at checkpoints. See :mod:`engine.training.trainer`.

``import engine.training`` imports torch (3-6 s); modules that only need names should import
from the sub-modules lazily.
"""

from engine.training.model import CPU_RUNGS, GPT, LADDER, GPTConfig, SizeChoice, build_model, nearest_size
from engine.training.trainer import SCHEDULE_NOTE, TrainSpec, default_lr, normalise_weights, train

__all__ = [
    "CPU_RUNGS",
    "GPT",
    "GPTConfig",
    "LADDER",
    "SCHEDULE_NOTE",
    "SizeChoice",
    "TrainSpec",
    "build_model",
    "default_lr",
    "nearest_size",
    "normalise_weights",
    "train",
]
