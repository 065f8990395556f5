"""Study: what was run (table with filters, loss along training), the study's set-up, and
creating a study from a TOML config or an uploaded run table."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import streamlit as st

from app import common
from engine.config import parse_config
from engine.errors import ValidationError
from engine.plots import final_checkpoints, human, plot_loss_curves, with_objective
from engine.runtable import read_run_table
from engine.runtable.importer import import_domains
from engine.runners.safety import HOW_TO_ALLOW, check_runner_allowed, commands_allowed

st.title("Study")


def overview(name: str) -> None:
    cfg = common.config(name)
    runs = common.runs(name)
    trials = common.trials(name)
    done = trials[trials["state"] == "done"]
    spent = float(pd.to_numeric(done["cost"], errors="coerce").fillna(0).sum())
    c = st.columns([2, 1, 1, 1])

    def counts_row(counts: dict[str, int]) -> None:
        two = st.columns(2)
        common.metric(two[0], "Finished runs", common.count(counts.get("done", 0)),
                      f"{common.count(counts['failed'])} failed" if counts.get("failed") else None,
                      help="Trials that ended with a result (state done; imported runs count too). Running and "
                           "pending trials are counted apart, as on the Proposals page's Status.")
        waiting = " · ".join(f"{common.count(counts[s])} {s}" for s in ("queued", "approved", "proposed")
                             if counts.get(s))
        common.metric(two[1], "Running", common.count(counts.get("running", 0)), waiting or "nothing pending",
                      help="Trials running now; under it those queued for a worker, approved (waiting for Run "
                           "approved) and proposed (waiting for a decision).")

    with c[0]:
        common.live_counts(name, counts_row)  # redraws itself as trials start and end
    common.metric(c[1], "Checkpoints", common.count(len(runs)),
                  f"of {common.count(runs['trial_id'].nunique() if len(runs) else 0)} runs with results",
                  help="Every stored checkpoint, of finished runs and of running or failed runs so far.")
    common.metric(c[2], "Budget spent", human(spent) + (f" / {human(cfg.budget)}" if cfg.budget else ""),
                  common.cost_unit(cfg),
                  help="Sum of the cost of finished trials (the runner's cost, else cost_per_step x steps, "
                       "else 6 x params x tokens).")
    t = cfg.target
    common.metric(c[3], "Target", f"{human(t.model_params)} params" if t else "none",
                  (f"{t.steps:,} steps" if t and t.steps else (f"{human(t.tokens)} tokens" if t and t.tokens else None)))
    left, right = st.columns([2, 3])
    with left:
        st.markdown(f"**Domains** (mixture): {', '.join(cfg.domains)}")
        evals = common.study_domains(name)
        if evals["eval"] and list(evals["eval"]) != list(cfg.domains):
            st.markdown(f"**Evaluated on**: {', '.join(evals['eval'])}")
        if evals["metric"]:
            st.markdown(f"**Metrics**: {', '.join(evals['metric'])}")
        st.markdown(f"**Objective**: `{cfg.objective}` ({cfg.direction}); **runner**: `{cfg.runner.kind}`")
        if cfg.description:
            st.caption(cfg.description)
    with right:
        if cfg.scales:
            st.markdown("**Scales on offer**")
            st.dataframe(pd.DataFrame([{
                "model size": human(s.model_params), "steps": ", ".join(f"{x:,}" for x in s.steps),
                "cost per step": human(s.cost_per_step) if s.cost_per_step is not None else "6 x params x tokens"}
                for s in cfg.scales]), hide_index=True, width="stretch")
        else:
            st.caption("No [[scales]] in the config: proposals can only reuse the sizes already run.")


def runs_section(name: str) -> None:
    cfg = common.config(name)
    runs = common.runs(name)
    if runs.empty:
        st.info("No results yet. Import a run table (below, or `mixplan import FILE --study NAME`) or run "
                "approved trials from the Proposals page.")
        return
    st.subheader("Runs")
    objectives = common.objective_options(runs, cfg.objective)
    f = st.columns([1.2, 1.2, 1.2, 1.2, 1.5])
    objective = f[0].selectbox("Objective", objectives, key="study_objective")
    color = f[1].selectbox("Colour lines by the weight of", list(cfg.domains), key="study_color")
    sizes = sorted(runs["model_params"].unique().tolist())
    chosen_sizes = f[2].multiselect("Model sizes", sizes, default=sizes, format_func=human, key="study_sizes")
    states = sorted(runs["state"].dropna().unique().tolist())
    chosen_states = f[3].multiselect("States", states, default=states, key="study_states")
    text = f[4].text_input("Run id contains", key="study_text", placeholder="e.g. r001")
    sel = runs[runs["model_params"].isin(chosen_sizes) & runs["state"].isin(chosen_states)]
    if text:
        sel = sel[sel["run_id"].astype(str).str.contains(text, case=False, regex=False)]
    wc = [f"w_{d}" for d in cfg.domains]
    with st.expander("Filter by mixture weight"):
        for d in cfg.domains:
            lo, hi = st.slider(f"weight of {d}", 0.0, 1.0, (0.0, 1.0), 0.01, key=f"study_w_{d}")
            if (lo, hi) != (0.0, 1.0):
                sel = sel[(sel[f"w_{d}"] >= lo - 1e-9) & (sel[f"w_{d}"] <= hi + 1e-9)]
    st.plotly_chart(plot_loss_curves(sel, objective, color), key="study_loss_curves")
    last = final_checkpoints(with_objective(sel, objective))
    cols = ["run_id", "trial_id", "state", "model_params", "steps", "tokens"] + wc + ["objective", "cost",
                                                                                      "source", "strategy"]
    table = last[[c for c in cols if c in last.columns]].rename(columns={"objective": objective})
    by_state = runs.groupby("state")["trial_id"].nunique()
    apart = ", ".join(f"{common.count(n)} {s}" for s, n in by_state.items() if s != "done")
    st.caption(f"{common.count(len(table))} of {common.count(runs['trial_id'].nunique())} runs with results match"
               + (f" ({common.count(by_state.get('done', 0))} finished; {apart}: their checkpoints so far)"
                  if apart else "") + "; last checkpoint of each.")
    st.dataframe(table, hide_index=True, width="stretch", height=320,
                 column_config=common.table_config(table, **{c: st.column_config.ProgressColumn(
                     c[2:], min_value=0.0, max_value=1.0, format="%.3f") for c in wc}))


@contextmanager
def _saved_upload(upload):
    """The upload as a file under its own name (the reader goes by the suffix), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="mixplan-upload-") as d:
        p = Path(d) / Path(upload.name).name
        p.write_bytes(upload.getvalue())
        yield p


def create_section() -> None:
    store = common.store()
    with st.expander("Create a study", expanded=not common.study_names()):
        allowed = commands_allowed()
        if not allowed:
            st.caption(":material/lock: Configs whose runner starts programs (`[runner] kind = \"command\"`) are "
                       "refused here: this server was started without `--allow-commands`, and such a study runs "
                       "whatever its config names as the server's user. To use one, " + HOW_TO_ALLOW)
        tab_cfg, tab_table = st.tabs(["From a config (TOML)", "From a run table (CSV / Parquet)"])
        with tab_cfg:
            st.caption("The same validation as `mixplan study create --config FILE`: every problem names the key "
                       "and the fix. See the README's config reference.")
            up = st.file_uploader("Study config", type=["toml"], key="create_cfg_file")
            text = st.text_area("...or paste it", key="create_cfg_text", height=160,
                                placeholder='name = "my-study"\ndomains = ["web", "code", "books"]')
            if st.button("Create study", key="create_cfg_button", type="primary"):
                with common.guard("creating the study"):
                    source = up.name if up is not None else "<pasted config>"
                    body = up.getvalue().decode("utf-8") if up is not None else text
                    if not body.strip():
                        raise ValidationError("no config given.", fix="upload a TOML file or paste one.")
                    cfg = parse_config(body, source=source)
                    check_runner_allowed(cfg, allowed=commands_allowed(), action="create")
                    store.create_study(cfg, actor="app")
                    common.select_study(cfg.name)
                    common.after_write(f"Created study {cfg.name} with domains {', '.join(cfg.domains)}.")
                    st.rerun()
        with tab_table:
            st.caption("The same validation as `mixplan import FILE --study NAME`: one row per checkpoint, "
                       "`run_id`, `model_params`, `tokens`/`steps`, `w_<domain>`, `loss_<domain>`.")
            up = st.file_uploader("Run table", type=["csv", "parquet", "pq"], key="create_table_file")
            name = st.text_input("Study name", key="create_table_name", placeholder="my-study")
            cfg_up = st.file_uploader("Config for a new study (optional)", type=["toml"], key="create_table_cfg")
            if st.button("Import runs", key="create_table_button", type="primary"):
                with common.guard("importing the run table"):
                    if up is None:
                        raise ValidationError("no run table given.", fix="upload a CSV or Parquet file.")
                    if not name:
                        raise ValidationError("no study name given.", fix="type the study to import into.")
                    cfg = parse_config(cfg_up.getvalue().decode("utf-8"), source=cfg_up.name) if cfg_up else None
                    if cfg is not None:
                        check_runner_allowed(cfg, allowed=commands_allowed(), action="create")
                    study_domains = import_domains(store, name, cfg, config_file=cfg_up.name if cfg_up else None)
                    with _saved_upload(up) as path:
                        table, notes = read_run_table(path, study_domains=study_domains)
                    rep = store.import_runs(name, table, source=up.name, config=cfg,
                                            renormalised_rows=notes.renormalised_rows, actor="app",
                                            locate=notes.locate)
                    if notes.renormalised_rows:
                        common.after_write(f"Renormalised the weights of {notes.renormalised_rows} row(s) (largest deviation "
                                     f"of the sum from 1: {notes.max_sum_deviation:.3g}).", "info")
                    for n in notes.notes:
                        common.after_write(f"Note: {n}", "info")
                    common.select_study(name)
                    common.after_write(f"Imported {rep.runs} runs ({rep.checkpoints} checkpoints) into {name}"
                               + (" (new study)" if rep.created_study else "") + ".")
                    st.rerun()


def body() -> None:
    common.show_flash()
    name = common.current_study()
    if name is not None:
        st.caption(f"Study **{name}**")
        with common.guard("loading the study"):
            overview(name)
        with common.guard("drawing the runs"):
            runs_section(name)
    else:
        st.info("This database has no study yet: create one below.")
    create_section()


common.run_page(body)
