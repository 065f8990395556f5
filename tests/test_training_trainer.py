"""engine.training.trainer: checkpoints, cost, determinism, schedule, mixture effect."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.data import Corpus, build_local_corpus
from engine.errors import ValidationError
from engine.records import Checkpoint, RunResult
from engine.training import TrainSpec, nearest_size, train
from engine.training.trainer import BatchSampler, eval_windows, normalise_weights


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    return build_local_corpus(root, max_bytes_per_domain=150_000, max_val_bytes=30_000).load()


def _spec(**kw) -> TrainSpec:
    base = dict(weights={"code": 1, "docstrings": 1, "unicode": 1}, model_params=100_000,
                steps=12, batch_size=4, context=32, eval_batches=1, seed=0)
    base.update(kw)
    return TrainSpec(**base)


def test_checkpoints_at_requested_steps_with_cost(corpus):
    seen = []
    res = train(_spec(eval_every=5, eval_steps=[3]), corpus, on_checkpoint=seen.append)
    assert isinstance(res, RunResult)
    assert [c.steps for c in res.checkpoints] == [3, 5, 10, 12]
    assert seen == res.checkpoints
    n = nearest_size(100_000).params
    assert res.info["model_params"] == n and res.info["size"] == "0.1M"
    for c in res.checkpoints:
        assert isinstance(c, Checkpoint)
        assert c.tokens == c.steps * 4 * 32
        assert c.cost == 6 * n * c.tokens
        assert set(c.losses) == {"code", "docstrings", "unicode"}
        assert all(0 < v < 7 for v in c.losses.values())
        assert c.wall_s is not None and c.wall_s > 0
    assert res.cost == 6 * n * 12 * 4 * 32
    assert res.info["tokens_per_s"] > 0 and "not equivalent to shorter runs" in res.info["schedule"]
    walls = [c.wall_s for c in res.checkpoints]
    assert walls == sorted(walls)


def test_same_seed_same_losses_other_seed_differs(corpus):
    a = train(_spec(eval_every=6), corpus)
    b = train(_spec(eval_every=6), corpus)
    c = train(_spec(eval_every=6, seed=1), corpus)
    assert [x.losses for x in a.checkpoints] == [x.losses for x in b.checkpoints]
    assert [x.losses for x in a.checkpoints] != [x.losses for x in c.checkpoints]


def test_eval_windows_are_fixed_and_span_the_split(corpus):
    w1 = eval_windows(corpus.val["code"], 8, 32)
    w2 = eval_windows(corpus.val["code"], 8, 32)
    np.testing.assert_array_equal(w1, w2)
    assert w1.shape == (8, 33) and w1[0, 0] == corpus.val["code"][0]
    assert w1[-1, -1] == corpus.val["code"][len(corpus.val["code"]) - 1]


def test_sampler_draws_domains_by_weight(corpus):
    s = BatchSampler(corpus, {"code": 0.75, "unicode": 0.25}, batch_size=64, context=16, seed=3)
    counts = np.zeros(2)
    for _ in range(50):
        x, y, doms = s()
        assert x.shape == (64, 16) and y.shape == (64, 16)
        assert (x[:, 1:] == y[:, :-1]).all()
        counts += np.bincount(doms, minlength=2)
    share = counts[0] / counts.sum()
    assert 0.71 < share < 0.79


def test_weights_are_validated_and_normalised():
    assert normalise_weights({"a": 2, "b": 2, "c": 0}, ["a", "b"]) == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValidationError, match="does not have"):
        normalise_weights({"a": 1, "zzz": 1}, ["a"])
    with pytest.raises(ValidationError, match=">= 0"):
        normalise_weights({"a": -1}, ["a"])
    with pytest.raises(ValidationError, match="zero"):
        normalise_weights({"a": 0}, ["a"])
    with pytest.raises(ValidationError):
        normalise_weights({}, ["a"])


def test_throughput_leaves_the_warm_up_steps_out(corpus):
    """tokens/s counts the steps after the first (three when compiled): compilation and
    set-up are reported apart (warmup_s, compile_s), not averaged into the training speed."""
    res = train(_spec(steps=12), corpus)
    i = res.info
    assert i["timing_warmup_steps"] == 1 and i["timed_steps"] == 11
    assert 0 < i["warmup_s"] < i["train_s"] and i["compile_s"] == 0.0  # not compiled on CPU
    assert i["tokens_per_s"] == pytest.approx(11 * 4 * 32 / (i["train_s"] - i["warmup_s"]))
    assert i["tokens_per_s"] != pytest.approx(12 * 4 * 32 / i["train_s"])
    # explicit, and never all of the steps
    assert train(_spec(steps=12, timing_warmup_steps=4), corpus).info["timed_steps"] == 8
    one = train(_spec(steps=1), corpus).info
    assert one["timed_steps"] == 1 and one["warmup_s"] == 0.0
    assert TrainSpec(weights={"a": 1}, model_params=1e5, steps=10).timing_warmup(compiled=True) == 3


def test_schedule_warmup_then_cosine_to_floor():
    spec = TrainSpec(weights={"a": 1}, model_params=1e5, steps=100, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [spec.lr_at(s, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1)
    # the schedule is defined by the full run: step 50 of a 100-step run != end of a 50-step run
    short = TrainSpec(weights={"a": 1}, model_params=1e5, steps=50, warmup_steps=10)
    assert spec.lr_at(49, 1.0) > short.lr_at(49, 1.0) * 2
    assert TrainSpec(weights={"a": 1}, model_params=1e5, steps=3).checkpoint_steps() == [3]
    assert TrainSpec(weights={"a": 1}, model_params=1e5, steps=10, eval_every=4,
                     eval_steps=[1, 99]).checkpoint_steps() == [1, 4, 8, 10]


def test_eval_domains_subset_and_unknown(corpus):
    res = train(_spec(steps=2, eval_domains=["unicode"]), corpus)
    assert list(res.checkpoints[-1].losses) == ["unicode"]
    with pytest.raises(ValidationError):
        train(_spec(steps=2, eval_domains=["nope"]), corpus)
    with pytest.raises(ValidationError, match="does not have"):
        train(_spec(steps=2, weights={"nope": 1.0}), corpus)


def test_trains_on_in_memory_corpus_and_threads_restored():
    import torch

    text = "the quick brown fox jumps over the lazy dog. " * 200
    c = Corpus.from_texts({"a": text, "b": text.upper()}, {"a": text[:2000], "b": text[:2000].upper()})
    before = torch.get_num_threads()
    res = train(TrainSpec(weights={"a": 1}, model_params="0.1M", steps=3, batch_size=2,
                          context=16, threads=1), c)
    assert torch.get_num_threads() == before
    assert res.info["threads"] == 1 and math.isfinite(res.checkpoints[-1].losses["a"])


@pytest.mark.slow
def test_mixture_moves_per_domain_loss(corpus):
    """Training mostly on code lowers code loss vs training mostly on unicode, and vice versa."""
    kw = dict(model_params=100_000, steps=150, batch_size=8, context=64, eval_batches=2, seed=0)
    a = train(TrainSpec(weights={"code": 0.8, "docstrings": 0.1, "unicode": 0.1}, **kw), corpus)
    b = train(TrainSpec(weights={"code": 0.1, "docstrings": 0.1, "unicode": 0.8}, **kw), corpus)
    la, lb = a.checkpoints[-1].losses, b.checkpoints[-1].losses
    assert la["code"] < lb["code"] - 0.05
    assert lb["unicode"] < la["unicode"] - 0.3
    # training made progress beyond byte frequencies
    assert la["code"] < 3.0 and lb["unicode"] < 3.0
