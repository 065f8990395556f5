"""engine.training.model: the ladder's parameter counts and the nearest-size choice."""

from __future__ import annotations

import math

import pytest
import torch

from engine.training.model import (
    CPU_RUNGS,
    GPT,
    LADDER,
    GPTConfig,
    build_model,
    ladder_params,
    nearest_size,
    non_embedding_params,
)


def _label_value(name: str) -> float:
    return float(name[:-1]) * (1e6 if name.endswith("M") else 1e9)


@pytest.mark.parametrize("name", CPU_RUNGS)
def test_cpu_rungs_count_their_parameters(name):
    w, l, h = LADDER[name]
    model = build_model(name)
    assert model.non_embedding_params() == non_embedding_params(w, l)
    # the rung's name is its size to within 20%
    assert abs(model.non_embedding_params() / _label_value(name) - 1) < 0.2
    assert w % h == 0


def test_ladder_spans_0p1m_to_1b_and_grows():
    counts = ladder_params()
    values = [counts[k] for k in LADDER]
    assert values == sorted(values)
    assert 0.08e6 < values[0] < 0.12e6 and 0.9e9 < values[-1] < 1.1e9
    for name, (w, l, h) in LADDER.items():  # formula agrees with a real (meta) model
        assert abs(counts[name] / _label_value(name) - 1) < 0.2, name
        assert w % h == 0 and (w // h) % 2 == 0


def test_formula_matches_module_for_a_gpu_rung():
    model = GPT(GPTConfig(*LADDER["30M"]))
    assert model.non_embedding_params() == ladder_params()["30M"]


def test_nearest_size_reports_the_rung():
    c = nearest_size(500_000)
    assert c.name == "0.5M" and c.params == ladder_params()["0.5M"] and c.requested == 500_000
    assert "0.5M" in c.describe() and "500,000" in c.describe()
    assert nearest_size(1).name == "0.1M"
    assert nearest_size(5e12).name == "1B"
    assert nearest_size(20_000_000).name in ("10M", "30M")
    assert nearest_size("3M").name == "3M"
    assert nearest_size(1e6).name == "1M"
    # nearest in log space
    for req in (2e5, 7e5, 2e6, 5e6, 5e7, 2e8, 6e8):
        c = nearest_size(req)
        best = min(ladder_params().values(), key=lambda p: abs(math.log(p / req)))
        assert c.params == best
    with pytest.raises(ValueError):
        nearest_size(0)


def test_forward_shapes_and_loss():
    torch.manual_seed(0)
    model = build_model("0.1M", context=32)
    x = torch.randint(0, 256, (3, 32))
    assert model(x).shape == (3, 32, 256)
    loss = model(x, torch.randint(0, 256, (3, 32)))
    assert loss.ndim == 0 and abs(loss.item() - math.log(256)) < 0.3
    # causal: changing a later token leaves earlier logits unchanged
    y = x.clone()
    y[:, 20] = (y[:, 20] + 1) % 256
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :20], model(y)[:, :20], atol=1e-6)
