"""Run tables (DESIGN.md contract 2): the format, reading with validation, writing."""

from engine.runtable.reader import (
    ImportNotes,
    read_run_table,
    regmix_kind,
    regmix_run_prefix,
    size_from_name,
    size_label,
    write_run_table,
)

__all__ = ["ImportNotes", "read_run_table", "regmix_kind", "regmix_run_prefix", "size_from_name", "size_label",
           "write_run_table"]
