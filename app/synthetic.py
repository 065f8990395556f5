"""Kept for old imports: the synthetic study generator lives in :mod:`engine.simulators.synthetic`."""

from engine.simulators.synthetic import (  # noqa: F401
    DEFAULT_DOMAINS,
    SIZES,
    TOKENS_PER_STEP,
    config_dict,
    create_study,
    losses,
    runs_table,
)
