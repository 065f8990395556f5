"""engine.numbers, the one formatter of the app's numbers, and plot titles that wrap instead of
being cut at the figure's edge."""

from __future__ import annotations

import math

from engine.config import config_from_dict
from engine.numbers import cost_text, cost_unit, count, duration, human
from engine.plots._common import title_block


def test_human_quantities():
    assert [human(x) for x in (1_000_000, 20_000_000, 1.2e9, 6.144e11, 6.144e12, 1234, 999, 0.00012963)] == [
        "1M", "20M", "1.2B", "614B", "6.14T", "1.23K", "999", "0.00013"]
    assert human(None) == "-" and human(math.nan) == "-" and human(math.inf) == "-" and human("x") == "x"


def test_counts_and_durations():
    assert count(64) == "64" and count(1234567) == "1,234,567" and count(None) == "-"
    assert [duration(s) for s in (0.2, 8, 65.3, 3600 + 180, 3 * 86400 + 7200)] == [
        "< 1 s", "8 s", "1 min 05 s", "1 h 03 min", "3 d 02 h"]
    assert duration(None) == "-" and duration(-3) == "< 1 s"


def test_cost_unit_follows_the_config():
    flops = config_from_dict({"name": "s", "domains": ["a", "b"], "tokens_per_step": 2048,
                              "scales": [{"model_params": 1000, "steps": [10]}]})
    units = config_from_dict({"name": "s", "domains": ["a", "b"],
                              "scales": [{"model_params": 1000, "steps": [10], "cost_per_step": 0.5}]})
    assert cost_unit(flops) == "FLOPs" and cost_unit(units) == "cost units"
    assert cost_text(6.144e12, "FLOPs") == "6.14T FLOPs" and cost_text(None, "FLOPs") == "-"


def test_long_titles_and_notes_wrap_with_room_for_them():
    note = ("docs, books, encyclopedia, quotes, latex share the rest in the optimum's ratio "
            "0.00:0.11:0.07:0.00; runs drawn at their own weights")
    text, top = title_block("Predicted mean_loss at 1M params, 500 steps (mfms-gp)", note, width=60)
    lines = text.split("<br>")
    assert lines[0] == "Predicted mean_loss at 1M params, 500 steps (mfms-gp)"
    notes = [ln.removeprefix("<sup>").removesuffix("</sup>") for ln in lines[1:]]
    assert len(notes) == 2 and all(len(n) <= 90 for n in notes) and " ".join(notes) == note
    assert top == 30 + 24 + 2 * 16
    short, top1 = title_block("Short", width=60)
    assert short == "Short" and top1 < top
