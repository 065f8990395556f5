"""mixplan's engine: everything except the web page.

Layers, each a sub-package with one responsibility:

- ``engine.config``      study config (TOML) -> :class:`engine.config.StudyConfig`
- ``engine.runtable``    run tables (CSV/Parquet, RegMix pairs) in and out, validated
- ``engine.store``       the DuckDB store: studies, trials and their lifecycle, checkpoints, events
- ``engine.models``      loss models (fit a run table, predict mean/std, optimum at a scale)
- ``engine.strategies``  proposers of the next trials (ask/tell over the store)
- ``engine.runners``     turn one trial into checkpoints (built-in trainer, command, simulators)
- ``engine.dispatch``    run many trials: local pool, SLURM (submitit), Ray
- ``engine.data`` / ``engine.training``  the built-in corpus and GPT trainer
- ``engine.export``      the chosen mixture in the formats trainers read
- ``engine.plots``       pure functions returning plotly figures
- ``engine.bench``       benchmarks (store, predict, optimize, trainer)
- ``engine.cli``         the ``mixplan`` command

``engine`` never imports Streamlit.
"""

__version__ = "0.1.0"
