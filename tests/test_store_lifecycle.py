"""The trial lifecycle: every illegal transition is refused (StateError) and changes nothing;
the legal path works; approve/reject/edit/complete are idempotent where they should be; a
failed trial keeps the checkpoints it stored."""

from __future__ import annotations


import pandas as pd
import pytest

from engine.config import config_from_dict
from engine.errors import NotFoundError, StateError, ValidationError
from engine.records import TRANSITIONS, Checkpoint, Proposal, RunResult, TrialState
from engine.store import Store

S = TrialState
CFG = config_from_dict({"name": "life", "domains": ["a", "b"], "tokens_per_step": 1000,
                        "scales": [{"model_params": 1_000_000, "steps": [100, 200], "cost_per_step": 0.5}]})
#: How to bring a new (proposed) trial to each state with legal moves.
PATHS = {
    S.PROPOSED: [],
    S.APPROVED: [S.APPROVED],
    S.QUEUED: [S.APPROVED, S.QUEUED],
    S.RUNNING: [S.APPROVED, S.QUEUED, S.RUNNING],
    S.DONE: [S.APPROVED, S.QUEUED, S.RUNNING, S.DONE],
    S.FAILED: [S.APPROVED, S.QUEUED, S.RUNNING, S.FAILED],
    S.REJECTED: [S.REJECTED],
    S.CANCELLED: [S.CANCELLED],
}


def ck(steps: int, loss: float = 3.0) -> Checkpoint:
    return Checkpoint(steps=steps, tokens=steps * 1000.0, losses={"a": loss, "b": loss + 0.1})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    st = Store(tmp_path_factory.mktemp("life") / "runs.duckdb")
    st.create_study(CFG)
    return st


def new_trial(store: Store, **kw) -> int:
    p = Proposal(weights={"a": 0.4, "b": 0.6}, model_params=1_000_000, steps=200, **kw)
    return store.add_trials("life", [p])[0].trial_id


def bring(store: Store, tid: int, state: TrialState) -> None:
    for to in PATHS[state]:
        if to == S.RUNNING:
            store.start_trial(tid, job_id="job-1")
        elif to == S.DONE:
            store.complete_trial(tid, RunResult([ck(100), ck(200, 2.5)], wall_s=3.0))
        elif to == S.FAILED:
            store.fail_trial(tid, "boom", log_tail="Traceback ...\nboom")
        else:
            store.transition([tid], to)


@pytest.mark.parametrize("start", list(S), ids=[s.value for s in S])
def test_illegal_transitions_are_refused(store: Store, start: TrialState) -> None:
    tid = new_trial(store)
    bring(store, tid, start)
    assert store.get_trial(tid).state == start
    before = (store.get_trial(tid), len(store.events("life")))
    for to in S:
        if to in TRANSITIONS[start]:
            continue
        with pytest.raises(StateError, match=f"trial {tid} is {start}; it cannot become {to}"):
            store.transition([tid], to)
    assert (store.get_trial(tid), len(store.events("life"))) == before


def test_a_batch_with_one_illegal_move_changes_nothing(store: Store) -> None:
    a, b = new_trial(store), new_trial(store)
    bring(store, b, S.REJECTED)
    with pytest.raises(StateError):
        store.approve("life", [a, b])
    assert store.get_trial(a).state == S.PROPOSED


def test_legal_path_and_records(store: Store) -> None:
    tid = new_trial(store, strategy="mfms-bo", acq_value=0.7, pred_mean=2.4, pred_std=0.1, reason="EI/cost")
    t = store.get_trial(tid)
    assert (t.state, t.strategy, t.acq_value, t.pred_mean, t.pred_std) == (S.PROPOSED, "mfms-bo", 0.7, 2.4, 0.1)
    assert t.tokens == 200_000 and t.cost == pytest.approx(100.0)
    assert store.approve("life", [tid]) == [tid]
    store.transition([tid], S.QUEUED)
    store.start_trial(tid, job_id="j42")
    assert store.get_trial(tid).attempts == 1 and store.get_trial(tid).job_id == "j42"
    assert store.record_checkpoints(tid, [ck(100)]) == 1
    assert store.complete_trial(tid, RunResult([ck(100), ck(200, 2.5)], cost=7.0, wall_s=1.5))
    t = store.get_trial(tid)
    assert t.state == S.DONE and t.cost == 7.0
    runs = store.runs_frame("life", meta=True)
    mine = runs[runs["trial_id"] == tid]
    assert list(mine["steps"]) == [100, 200] and list(mine["loss_a"]) == [3.0, 2.5]
    kinds = list(store.events("life", trial_id=tid)["kind"])[::-1]
    assert kinds == ["proposed", "approved", "queued", "running", "done"]


def test_idempotence(store: Store) -> None:
    tid = new_trial(store)
    store.approve("life", [tid])
    with pytest.raises(StateError):  # approving twice is refused, and changes nothing
        store.approve("life", [tid])
    assert store.get_trial(tid).state == S.APPROVED
    # approve/reject --all with nothing proposed is a no-op
    for t in store.trials("life", [S.PROPOSED]):
        store.transition([t.trial_id], S.CANCELLED)
    assert store.approve("life") == [] and store.reject("life") == []
    # edit: the same edit twice gives the same trial
    e1 = store.edit_trial(tid, weights={"a": 0.25, "b": 0.75})
    e2 = store.edit_trial(tid, weights={"a": 0.25, "b": 0.75})
    assert e1 == e2 and e1.weights == {"a": 0.25, "b": 0.75}
    with pytest.raises(ValidationError):
        store.edit_trial(tid, weights={"a": 0.5, "b": 0.7})
    assert store.get_trial(tid).weights == {"a": 0.25, "b": 0.75}
    # complete twice: the second changes nothing; checkpoints recorded twice are stored once
    store.transition([tid], S.QUEUED)
    store.start_trial(tid)
    assert store.record_checkpoints(tid, [ck(100)]) == 1
    assert store.record_checkpoints(tid, [ck(100)]) == 0
    res = RunResult([ck(100), ck(200, 2.5)], wall_s=1.0)
    assert store.complete_trial(tid, res) is True
    n = len(store.runs_frame("life"))
    assert store.complete_trial(tid, res) is False
    assert len(store.runs_frame("life")) == n
    with pytest.raises(StateError):
        store.edit_trial(tid, weights={"a": 0.5, "b": 0.5})
    # reject: rejecting a rejected trial is refused
    r = new_trial(store, reason="EI/cost")
    store.reject("life", [r], reason="not now", actor="alice")
    t = store.get_trial(r)
    assert (t.reason, t.rejection_reason, t.rejected_by) == ("EI/cost", "not now", "alice")
    row = store.trials_frame("life").set_index("trial_id").loc[r]
    assert (row["reason"], row["rejection_reason"], row["rejected_by"]) == ("EI/cost", "not now", "alice")
    with pytest.raises(StateError):
        store.reject("life", [r])


def test_a_checkpoint_is_its_steps_else_its_tokens(store: Store) -> None:
    """The same checkpoint reported with and without tokens is stored once (the reader's rule:
    (run_id, steps), or (run_id, tokens) for rows without steps)."""
    tid = new_trial(store)
    bring(store, tid, S.RUNNING)
    assert store.record_checkpoints(tid, [Checkpoint(100, None, {"a": 3.0, "b": 3.1})]) == 1
    assert store.record_checkpoints(tid, [Checkpoint(100, 100_000.0, {"a": 3.0, "b": 3.1})]) == 0
    # without steps, the tokens say which checkpoint it is; with steps, the tokens do not matter
    assert store.record_checkpoints(tid, [Checkpoint(None, 150_000.0, {"a": 2.9, "b": 3.0}),
                                          Checkpoint(None, 150_000.0, {"a": 2.9, "b": 3.0})]) == 1
    assert store.record_checkpoints(tid, [Checkpoint(None, 150_000.0, {"a": 2.9, "b": 3.0})]) == 0
    assert store.record_checkpoints(tid, [Checkpoint(200, 150_000.0, {"a": 2.8, "b": 2.9})]) == 1
    assert store.complete_trial(tid, RunResult([Checkpoint(200, None, {"a": 2.8, "b": 2.9})]))
    rows = store.runs_frame("life", meta=True)
    rows = rows[rows["trial_id"] == tid]
    got = [(None if pd.isna(s) else int(s), None if pd.isna(t) else float(t))
           for s, t in zip(rows["steps"], rows["tokens"])]
    assert got == [(100, None), (200, 150_000.0), (None, 150_000.0)]


def test_fail_keeps_checkpoints_and_can_retry(store: Store) -> None:
    tid = new_trial(store)
    bring(store, tid, S.RUNNING)
    store.record_checkpoints(tid, [ck(100, 3.3)])
    store.fail_trial(tid, "exit 1", log_tail="x" * 10_000)
    t = store.get_trial(tid)
    assert t.state == S.FAILED and t.reason == "exit 1"
    runs = store.runs_frame("life", meta=True)
    assert list(runs.loc[runs["trial_id"] == tid, "loss_a"]) == [3.3]
    ev = store.events("life", trial_id=tid, limit=1)
    assert ev["kind"].iloc[0] == "failed" and len(ev["detail"].iloc[0]) < 4200
    with pytest.raises(StateError):
        store.record_checkpoints(tid, [ck(200)])
    store.approve("life", [tid])  # a retry
    store.transition([tid], S.QUEUED)
    store.start_trial(tid)
    assert store.get_trial(tid).attempts == 2
    store.complete_trial(tid, RunResult([ck(100, 3.3), ck(200, 2.9)]))
    runs = store.runs_frame("life", meta=True)
    assert list(runs.loc[runs["trial_id"] == tid, "loss_a"]) == [3.3, 2.9]


def test_unknown_trial_and_study(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.transition([999_999], S.APPROVED)
    with pytest.raises(NotFoundError, match="no study named 'nope'"):
        store.trials("nope")
    other = config_from_dict({"name": "other", "domains": ["a", "b"]})
    store.create_study(other)
    tid = new_trial(store)
    with pytest.raises(NotFoundError, match="does not belong"):
        store.approve("other", [tid])
    assert store.get_trial(tid).state == S.PROPOSED


def test_new_trials_validated(store: Store) -> None:
    n = len(store.trials("life"))
    with pytest.raises(ValidationError, match="sum"):
        store.add_trials("life", [Proposal(weights={"a": 0.3, "b": 0.3}, model_params=1_000_000, steps=100)])
    with pytest.raises(StateError):
        store.add_trials("life", [Proposal(weights={"a": 0.3, "b": 0.7}, model_params=1, steps=1)],
                         state=S.RUNNING)
    assert len(store.trials("life")) == n


def test_replace_swaps_a_trials_checkpoints_atomically(store: Store) -> None:
    """A retried attempt's checkpoints supersede the failed attempt's: ``replace`` drops the
    stored ones and inserts the new set in one transaction; the final result's set wins."""
    tid = new_trial(store)
    bring(store, tid, S.RUNNING)
    v0 = store.data_version("life")
    assert store.record_checkpoints(tid, [ck(50, 9.0), ck(100, 9.0)]) == 2  # attempt 1
    assert store.record_checkpoints(tid, [ck(50, 4.0)], replace=True) == 0  # attempt 2: same key, new value
    df = store.runs_frame("life")
    mine = df[df["run_id"] == store.get_trial(tid).run_id]
    assert mine["steps"].tolist() == [50] and mine["loss_a"].tolist() == [4.0]
    assert store.complete_trial(tid, RunResult([ck(50, 4.0), ck(100, 3.5), ck(200, 3.0)]), replace=True)
    df = store.runs_frame("life")
    mine = df[df["run_id"] == store.get_trial(tid).run_id].sort_values("steps")
    assert mine["steps"].tolist() == [50, 100, 200] and mine["loss_a"].tolist() == [4.0, 3.5, 3.0]
    assert mine["loss_b"].tolist() == pytest.approx([4.1, 3.6, 3.1])
    assert store.data_version("life") > v0  # readers (the app) see the change
