"""Shared fixtures: a fresh database path, and the RegMix tables from ../shared (skipped if absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
REGMIX_DIR = REPO.parent / "shared" / "benchmarks" / "regmix"


@pytest.fixture
def tmp_db(tmp_path: Path) -> Path:
    """Path of a database file that does not exist yet (a Store creates it)."""
    return tmp_path / "runs.duckdb"


@pytest.fixture
def regmix_dir() -> Path:
    """The RegMix tables (mixture + loss CSVs); the test is skipped where they are absent."""
    if not (REGMIX_DIR / "train_mixture_1m.csv").exists():
        pytest.skip(f"RegMix tables not found at {REGMIX_DIR}")
    return REGMIX_DIR


@pytest.fixture
def data_dir() -> Path:
    """tests/data: small fixture files."""
    return DATA
