"""The DuckDB run store. See :class:`engine.store.store.Store`."""

from engine.store.store import DEFAULT_DB, ImportReport, Store

__all__ = ["DEFAULT_DB", "ImportReport", "Store"]
