"""What an import may do, checked before any file is read: one rule for `mixplan import` and the
app's "Import runs" (engine/cli/runs.py and app/views/study.py both call :func:`import_domains`)."""

from __future__ import annotations

from pathlib import Path

from engine.errors import ValidationError


def import_domains(store, study: str, config=None, *, config_file: str | Path | None = None,
                   study_label: str = "the study to import into") -> list[str] | None:
    """The training domains a run table imported into ``study`` must have, after checking the
    study / config pair: a config must name ``study``, and is only for a new study.

    ``store``: the database (None where it does not exist yet); ``config``: a
    :class:`engine.config.StudyConfig` for a new study, or None; ``config_file``: where it came
    from, and ``study_label`` what the caller calls the study name (``--study`` on the command
    line), for the messages. Returns the existing study's domains, else the config's, else None
    (a new study whose domains come from the table's ``w_*`` columns). A study name that is not
    usable is refused first, naming ``study_label``."""
    from engine.config import check_study_name

    check_study_name(study, study_label)  # before the table: a bad name is not the table's fault
    where = None if config_file is None else str(config_file)
    if config is not None and config.name != study:
        raise ValidationError(f"the config names study '{config.name}' but {study_label} is '{study}'.",
                              file=where, fix="use the same name in both.")
    if store is not None and study in store.study_names():
        if config is not None:
            raise ValidationError(f"study '{study}' exists already; a config is only for a new study.",
                                  file=where, fix=f"drop the config (change the study's config with `mixplan study "
                                                  f"edit --study {study} --config PATCH.toml`), or import under a new "
                                                  "study name.")
        return list(store.study_domains(study)["train"])
    return list(config.domains) if config is not None else None
