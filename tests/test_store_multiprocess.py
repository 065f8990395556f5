"""Many processes on one database file, as in real use: worker processes write (add trials,
move them through their lifecycle, record checkpoints) while app-like readers poll. Nothing
is lost, no lock error reaches the user (StoreBusyError is never raised), and readers see the
counts grow. Also runnable as a script: ``python tests/test_store_multiprocess.py writer|reader ...``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WRITERS, READERS = 3, 2
TRIALS_PER_WRITER, CHECKPOINTS_PER_TRIAL, BATCH = 4, 90, 30  # 3 * 4 * 90 = 1,080 checkpoint rows


def writer(db: str, wid: int) -> None:
    from engine.records import Checkpoint, Proposal, RunResult, TrialState
    from engine.store import Store

    store = Store(db, busy_timeout_s=120)
    for k in range(TRIALS_PER_WRITER):
        w = 0.1 + 0.2 * wid + 0.01 * k
        (trial,) = store.add_trials("mp", [Proposal(weights={"a": w, "b": 1 - w}, model_params=1_000_000, steps=100,
                                                    run_id=f"w{wid}-t{k}", strategy="random")], actor=f"w{wid}")
        tid = trial.trial_id
        store.approve("mp", [tid], actor=f"w{wid}")
        store.transition([tid], TrialState.QUEUED, actor=f"w{wid}")
        store.start_trial(tid, actor=f"w{wid}", job_id=f"{os.getpid()}")
        cks = [Checkpoint(steps=s + 1, tokens=None, losses={"a": 3.0 - s * 1e-3, "b": 2.0 + wid}, wall_s=0.1)
               for s in range(CHECKPOINTS_PER_TRIAL)]
        for start in range(0, CHECKPOINTS_PER_TRIAL - BATCH, BATCH):
            store.record_checkpoints(tid, cks[start:start + BATCH], actor=f"w{wid}")
        assert store.complete_trial(tid, RunResult(cks, wall_s=1.0), actor=f"w{wid}")


def reader(db: str, stop: str, out: str) -> None:
    from engine.store import Store

    store = Store(db, busy_timeout_s=120, create=False)
    seen = []
    while True:
        final = os.path.exists(stop)
        studies = {s.name: s for s in store.list_studies()}
        runs = store.runs_frame("mp")
        latest = store.latest_checkpoints("mp")
        seen.append([studies["mp"].checkpoints, len(runs), len(latest)])
        if final:
            break
        time.sleep(0.2)  # the app's refresh: a few polls a second
    Path(out).write_text(json.dumps(seen))


#: Readers polling without pause, as many as a busy app and dashboards might run, and the
#: writes that must still get through: each write may wait at most WRITER_BOUND_S for the lock.
HOT_READERS, WRITES, WRITER_BOUND_S = 8, 10, 20.0


def hot_reader(db: str, stop: str, ready: str, out: str) -> None:
    """Read in a tight loop (no sleep), so that some reader almost always holds the shared lock."""
    from engine.store import Store

    store = Store(db, busy_timeout_s=120, create=False)
    reads = 0
    while not os.path.exists(stop):
        store.list_studies()
        reads += 1
        if reads == 1:
            Path(ready).write_text("")
    Path(out).write_text(json.dumps(reads))


def steady_writer(db: str) -> None:
    """WRITES short transactions, each of which must get the lock within WRITER_BOUND_S."""
    from engine.store import Store

    store = Store(db, busy_timeout_s=WRITER_BOUND_S, create=False)
    for k in range(WRITES):
        store.log_event("mp", "tick", actor="writer", detail={"k": k})


def _spawn(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, __file__, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_writers_and_readers_share_the_file(tmp_path: Path) -> None:
    from engine.config import config_from_dict
    from engine.store import Store

    db = tmp_path / "runs.duckdb"
    store = Store(db)
    store.create_study(config_from_dict({"name": "mp", "domains": ["a", "b"]}))
    stop = tmp_path / "stop"
    readers = [_spawn("reader", str(db), str(stop), str(tmp_path / f"r{i}.json")) for i in range(READERS)]
    writers = [_spawn("writer", str(db), str(i)) for i in range(WRITERS)]
    for p in writers:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    stop.write_text("")
    for p in readers:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "StoreBusyError" not in err and "lock" not in err.lower()

    total = WRITERS * TRIALS_PER_WRITER * CHECKPOINTS_PER_TRIAL
    assert total >= 1000
    runs = store.runs_frame("mp", meta=True)
    assert len(runs) == total  # 0 lost
    assert runs.groupby("run_id").size().eq(CHECKPOINTS_PER_TRIAL).all()
    assert set(runs["run_id"]) == {f"w{i}-t{k}" for i in range(WRITERS) for k in range(TRIALS_PER_WRITER)}
    assert set(runs["state"]) == {"done"}
    assert not runs.duplicated(["run_id", "steps"]).any()
    trials = store.trials_frame("mp")
    assert len(trials) == WRITERS * TRIALS_PER_WRITER and set(trials["attempts"]) == {1}
    assert store.list_studies()[0].checkpoints == total
    assert len(store.events("mp")) == 1 + WRITERS * TRIALS_PER_WRITER * 5
    for i in range(READERS):
        seen = json.loads((tmp_path / f"r{i}.json").read_text())
        counts = [s[0] for s in seen]
        assert counts == sorted(counts), "a reader saw the count go down"
        rows = [s[1] for s in seen]
        assert rows == sorted(rows) and rows[-1] == total
        assert seen[-1][2] == WRITERS * TRIALS_PER_WRITER
        assert counts[-1] == total
        assert len(set(counts)) >= 3, f"reader {i} did not see the data grow: {sorted(set(counts))}"


@pytest.mark.slow
def test_a_writer_is_not_starved_by_readers_that_never_pause(tmp_path: Path) -> None:
    """Readers take the lock shared, the writer exclusive. Without a writer-intent gate, readers
    that overlap one another without pause keep the shared lock held forever and the writer
    waits out its busy timeout (StoreBusyError). With it, every write lands and no process sees
    a lock error. (Not a speed test: the bound is the writer's busy timeout per write.)"""
    from engine.config import config_from_dict
    from engine.store import Store

    db = tmp_path / "runs.duckdb"
    store = Store(db)
    store.create_study(config_from_dict({"name": "mp", "domains": ["a", "b"]}))
    stop = tmp_path / "stop"
    readers = [_spawn("hot-reader", str(db), str(stop), str(tmp_path / f"ready{i}"), str(tmp_path / f"h{i}.json"))
               for i in range(HOT_READERS)]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready{i}").exists() for i in range(HOT_READERS)):
            assert time.monotonic() < deadline, "the readers did not start"
            assert all(p.poll() is None for p in readers), "a reader died"
            time.sleep(0.05)
        writer = _spawn("steady-writer", str(db))
        _, err = writer.communicate(timeout=WRITES * WRITER_BOUND_S + 60)
        assert writer.returncode == 0, err
        assert "StoreBusyError" not in err
    finally:
        stop.write_text("")
        errs = [p.communicate(timeout=120)[1] for p in readers]
    for p, err in zip(readers, errs):
        assert p.returncode == 0, err
        assert "StoreBusyError" not in err and "lock" not in err.lower()
    assert all(json.loads((tmp_path / f"h{i}.json").read_text()) > 0 for i in range(HOT_READERS))
    ticks = store.events("mp")
    assert sorted(json.loads(d)["k"] for d in ticks.loc[ticks["kind"] == "tick", "detail"]) == list(range(WRITES))


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "writer":
        writer(sys.argv[2], int(sys.argv[3]))
    elif role == "reader":
        reader(sys.argv[2], sys.argv[3], sys.argv[4])
    elif role == "hot-reader":
        hot_reader(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif role == "steady-writer":
        steady_writer(sys.argv[2])
