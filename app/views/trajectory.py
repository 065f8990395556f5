"""Trajectory: the incumbent's value at the target fidelity against cumulative cost. Benchmark
studies (one study per strategy, same domains) can be drawn together: one curve per strategy and
the speed-up of each over a chosen reference. Results of `mixplan bench optimize` (its CSVs) can
be loaded too: each strategy's median regret curve and mfms-bo's speed-ups."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from app import common
from engine.bench.optimize_report import CURVES_FILE, RUNS_FILE, load_results
from engine.plots import (
    plot_regret_curves,
    plot_regret_trajectory,
    plot_trajectory,
    scale_label,
    speedup_value,
    speedups,
    trajectory_frame,
)
from engine.plots.trajectory import has_regret
from engine.trajectory import comparable_studies, is_at_target, trajectory

st.title("Trajectory")


@st.cache_data(show_spinner=False, max_entries=32)
def _entries(path: str, study: str, version: int) -> pd.DataFrame:
    out = trajectory(common._store(path), study)
    rows = [dataclasses.asdict(e) if dataclasses.is_dataclass(e) else dict(e) for e in out or []]
    return pd.DataFrame(rows)


def strategy_of(study: str) -> str | None:
    """The strategy that proposed most of the study's trials (None: imported or by hand)."""
    t = common.trials(study)
    s = t["strategy"].dropna()
    s = s[s != "manual"]
    return s.mode().iloc[0] if len(s) else None


def curve_name(study: str) -> str:
    """'study (strategy)'."""
    s = strategy_of(study)
    return f"{study} ({s})" if s else study


def incumbent_text(last: pd.Series) -> str:
    text = "**Current incumbent**: " + common.mixture_text(last["incumbent_weights"])
    if pd.notna(last.get("incumbent_pred")):
        basis = last.get("incumbent_basis")
        if isinstance(basis, str) and not is_at_target(basis):
            text += f" (best {basis}: {last['incumbent_pred']:.4f}; not yet measured at the target)"
        else:
            what = "observed" if last.get("incumbent_source") == "observed" else "predicted"
            text += f" ({what} {last['incumbent_pred']:.4f} at the target)"
    return text


def studies_section(name: str, cfg) -> None:
    siblings = [o for o in common.study_names()
                if o != name and tuple(common.config(o).domains) == tuple(cfg.domains)]
    # studies of the same experiment (one per strategy, e.g. the bundled demo-bo-*) are drawn together
    same = [o for o in comparable_studies(common._store(common.db_path()), name) if o in siblings]
    others = st.multiselect("Compare with studies of the same domains (e.g. one study per strategy of a benchmark)",
                            siblings, default=same, key="traj_compare", disabled=not siblings,
                            placeholder="no other study with these domains" if not siblings else "pick studies")
    frames = []
    for s in [name] + list(others):
        args = (common.db_path(), s, common.version(s))
        out = common.background(("trajectory",) + args, f"Computing the incumbent after each finished trial of {s}",
                                _entries, *args)
        if out is None:
            return
        df = trajectory_frame(out)
        if len(df):
            df["strategy"] = curve_name(s)
            df["_study"] = s
            frames.append(df)
    if not frames:
        st.info("No finished trial yet: the trajectory starts with the first result.")
        return
    df = pd.concat(frames, ignore_index=True)
    label = scale_label(cfg.target.model_params, cfg.target.steps, cfg.target.tokens) if cfg.target else ""
    st.plotly_chart(plot_trajectory(df.drop(columns="_study"), objective=cfg.objective, target_label=label,
                                    budget=cfg.budget if not others else None), key="trajectory_chart")
    if has_regret(df):
        st.plotly_chart(plot_regret_trajectory(df.drop(columns="_study"), target_label=label), key="regret_chart")
        st.caption("The runner is mixplan's synthetic landscape, which knows its true optimum: regret = the "
                   "incumbent's true value at the target minus the best achievable (one seed per strategy).")
    names = list(dict.fromkeys(df["strategy"]))
    if len(names) > 1:
        study_of = dict(zip(df["strategy"], df["_study"]))
        randoms = [n for n in names if strategy_of(study_of[n]) == "random"]
        ref = st.selectbox("Reference curve for the speed-ups", names,
                           index=names.index(randoms[0]) if randoms else 0, key="traj_reference",
                           help="Default: the curve whose trials a `random` strategy proposed.")
        value = speedup_value(df)
        basis = ("the true value the simulator knows" if value == "incumbent_true"
                 else "the predicted or observed value")
        st.markdown(f"**Speed-up**: the cost each curve needs to reach the final incumbent of **{ref}**, relative "
                    f"to {ref}'s own (compared on `{value}`: {basis}).")
        st.dataframe(speedups(df, reference=ref, value=value, direction=cfg.direction_for(cfg.objective)),
                     hide_index=True)
    mine = df[df["_study"] == name]
    last = mine.iloc[-1]
    if isinstance(last.get("incumbent_weights"), dict):
        st.markdown(incumbent_text(last))
    show = mine.drop(columns=[c for c in ("weights", "incumbent_weights", "strategy", "_study") if c in mine.columns])
    st.dataframe(show, hide_index=True, width="stretch", height=260, column_config=common.table_config(show))


@st.cache_data(show_spinner=False, max_entries=8)
def _bench_from_path(path: str, mtime: float):
    return load_results(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _bench_from_bytes(data: bytes, name: str):
    import io

    return load_results(io.BytesIO(data), name=name)


def bench_section() -> None:
    with st.expander("Benchmark results (`mixplan bench optimize`)", expanded=bool(st.session_state.get("bench_path"))):
        st.caption(f"Its output folder (or {RUNS_FILE} / {CURVES_FILE} in it): each strategy's median regret at the "
                   "target against cumulative cost, and mfms-bo's speed-up over each baseline (from the runs file).")
        c = st.columns([2, 2])
        path = c[0].text_input("Folder or CSV on the server", key="bench_path",
                               placeholder="e.g. artifacts/bench/optimize")
        up = c[1].file_uploader("...or upload a CSV", type=["csv"], key="bench_upload")
        if not path and up is None:
            return
        with common.guard("reading the benchmark results"):
            if up is not None:
                curves, summary = _bench_from_bytes(up.getvalue(), up.name)
            else:
                from pathlib import Path

                p = Path(path).expanduser()
                curves, summary = _bench_from_path(str(p.resolve()), p.stat().st_mtime if p.exists() else 0.0)
            st.plotly_chart(plot_regret_curves(curves), key="bench_curves")
            if len(summary):
                cols = [c for c in ("objective", "baseline", "seeds", "speedup_median", "speedup_q25", "speedup_q75",
                                    "mfms_reached", "baseline_final_regret_median", "mfms_final_regret_median")
                        if c in summary.columns]
                st.markdown("**mfms-bo's speed-up** (cost for the baseline to reach its final regret / cost for "
                            "mfms-bo to reach it; median over seeds)")
                st.dataframe(summary[cols].round(4), hide_index=True, width="stretch")
            else:
                st.caption("No speed-up table: the results have no mfms-bo curve, or only the curves file was given.")


def body() -> None:
    name = common.require_study()
    cfg = common.config(name)
    st.caption(f"Study **{name}** · costs in {common.cost_unit(cfg)}")
    with common.guard("drawing the trajectory"):
        studies_section(name, cfg)
    bench_section()


common.run_page(body)
