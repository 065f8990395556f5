"""Proposals: ask a strategy for the next runs, approve / reject / edit them, dispatch the
approved ones and watch them run (live), with failures and their log tails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

from app import common
from engine.errors import ValidationError
from engine.plots import human
from engine.strategies import strategy_names
from engine.study import propose

st.title("Proposals")
EXECUTORS = ("local", "slurm", "ray")
EDITOR_KEY = "proposals_editor"


def propose_section(name: str) -> None:
    st.subheader("Ask a strategy")
    c = st.columns([1.4, 0.8, 0.8, 1])
    strategy = c[0].selectbox("Strategy", strategy_names(), key="prop_strategy")
    q = c[1].number_input("How many (q)", min_value=1, max_value=64, value=4, step=1, key="prop_q")
    seed = c[2].number_input("Seed", min_value=0, value=0, step=1, key="prop_seed")
    c[3].write("")
    clicked = c[3].button("Propose", key="prop_button", type="primary")
    if clicked:
        with common.guard(f"asking {strategy} for proposals"):
            with st.spinner(f"{strategy} is choosing {q} run(s) (fitting its model first)..."):
                new = propose(common.store(), name, strategy, int(q), int(seed))
            common.after_write(f"{strategy} proposed {len(new)} trial(s): {', '.join(str(t.trial_id) for t in new) or '-'}"
                         if new else f"{strategy} has nothing more to propose.", "success" if new else "info")
            st.rerun()
    with st.expander("Add a run by hand"):
        cfg = common.config(name)
        st.caption("Weights must sum to 1 (a rounding slip up to 0.001 is renormalised); they are checked "
                   "against the study's bounds.")
        cols = st.columns(len(cfg.domains))
        K = len(cfg.domains)
        default = [round(1.0 / K, 4)] * (K - 1) + [round(1.0 - round(1.0 / K, 4) * (K - 1), 4)]
        w = {d: cols[i].number_input(d, 0.0, 1.0, default[i], 0.01, format="%.4f",
                                     key=f"manual_w_{d}") for i, d in enumerate(cfg.domains)}
        total = sum(w.values())
        if 0 < abs(total - 1.0) <= 1e-3:
            w = {d: v / total for d, v in w.items()}
        sizes = sorted({s.model_params for s in cfg.scales}) or sorted(common.runs(name)["model_params"].unique())
        c2 = st.columns(3)
        mp = c2[0].selectbox("Model size", sizes, format_func=human, key="manual_size") if len(sizes) else None
        steps = c2[1].number_input("Steps", min_value=1, value=int(cfg.scales[0].steps[-1]) if cfg.scales else 1000,
                                   key="manual_steps")
        c2[2].write("")
        if c2[2].button("Add as proposed", key="manual_add"):
            from engine.records import Proposal

            with common.guard("adding the run"):
                if mp is None:
                    raise ValidationError("the study has no model size to train.", fix="add [[scales]] to its config.")
                t = common.store().add_trials(name, [Proposal(weights=w, model_params=int(mp), steps=int(steps),
                                                              reason="added by hand in the app")], actor="app")
                common.after_write(f"Added trial {t[0].trial_id} (proposed).")
                st.rerun()


def _apply(action: str, ids: list[int], name: str, edits=()) -> None:
    """Approve or reject ``ids``, first saving the table's unsaved ``edits`` (those of trials not
    being rejected): an action never drops what was typed into the table. An edit that fails
    validation stops the action with its message."""
    store = common.store()
    with common.guard(f"{action} trial(s) {ids}"):
        if not ids:
            raise ValidationError("no trial selected.", fix="tick trials in the table, or use a trial's own buttons.")
        keep = [e for e in edits if not (action == "reject" and e[0] in ids)]
        if keep:
            _save_edits(keep)
        if action == "approve":
            store.approve(name, ids, actor="app")
        else:
            store.reject(name, ids, actor="app", reason="rejected in the app")
        common.after_write(f"{'Approved' if action == 'approve' else 'Rejected'} trial(s) {', '.join(map(str, ids))}"
                           + (f" (after saving the table's edits of trial(s) {', '.join(str(e[0]) for e in keep)})"
                              if keep else "") + ".")
        st.session_state.pop(EDITOR_KEY, None)  # the edits are stored; start the table afresh
        st.rerun()


def _save_edits(changed) -> None:
    for tid, weights, mp, steps in changed:
        common.store().edit_trial(tid, weights=weights, model_params=mp, steps=steps, actor="app")


def _edit(trial_id: int, weights: dict[str, float], model_params: int | None, steps: int | None) -> None:
    with common.guard(f"editing trial {trial_id}"):
        common.store().edit_trial(int(trial_id), weights=weights, model_params=model_params, steps=steps, actor="app")
        common.after_write(f"Saved trial {trial_id} (weights re-validated).")
        st.rerun()


def pending_section(name: str) -> None:
    cfg = common.config(name)
    trials = common.trials(name)
    pend = trials[trials["state"].isin(["proposed", "approved"])].reset_index(drop=True)
    st.subheader(f"Proposed and approved ({len(pend)})")
    if pend.empty:
        st.caption("Nothing waiting for a decision. Ask a strategy above.")
        return
    wc = [f"w_{d}" for d in cfg.domains]
    view = pend[["trial_id", "state", "run_id"] + wc + ["model_params", "steps", "cost", "pred_mean", "pred_std",
                                                         "strategy", "reason"]].copy()
    view.insert(0, "select", False)
    edited = st.data_editor(
        view, key=EDITOR_KEY, hide_index=True, width="stretch",
        disabled=["trial_id", "state", "run_id", "cost", "pred_mean", "pred_std", "strategy", "reason"],
        column_config={"select": st.column_config.CheckboxColumn("✓", help="select for the buttons below"),
                       **{c: st.column_config.NumberColumn(c[2:], min_value=0.0, max_value=1.0, format="%.4f")
                          for c in wc},
                       "model_params": st.column_config.NumberColumn("params", format="compact"),
                       "cost": st.column_config.NumberColumn("cost", format="%.4g"),
                       "pred_mean": st.column_config.NumberColumn("pred mean", format="%.4f"),
                       "pred_std": st.column_config.NumberColumn("pred std", format="%.3g")})
    selected = edited.loc[edited["select"], "trial_id"].astype(int).tolist()
    changed = _table_edits(view, edited, wc)
    if changed:
        st.caption(f"Unsaved table edits of trial(s) {', '.join(str(c[0]) for c in changed)}: the buttons below save "
                   "them first (weights re-validated).")
    b = st.columns(5)
    if b[0].button(f"Approve selected ({len(selected)})", key="approve_selected", disabled=not selected):
        _apply("approve", selected, name, changed)
    if b[1].button(f"Reject selected ({len(selected)})", key="reject_selected", disabled=not selected):
        _apply("reject", selected, name, changed)
    proposed = pend.loc[pend["state"] == "proposed", "trial_id"].astype(int).tolist()
    if b[2].button(f"Approve all proposed ({len(proposed)})", key="approve_all", disabled=not proposed):
        _apply("approve", proposed, name, changed)
    if b[3].button(f"Save table edits ({len(changed)})", key="save_edits", disabled=not changed):
        with common.guard("saving the table's edits"):
            _save_edits(changed)
            common.after_write(f"Saved edits of trial(s) {', '.join(str(c[0]) for c in changed)} (weights re-validated).")
            st.session_state.pop(EDITOR_KEY, None)
            st.rerun()
    st.caption("Every action also has its own button per trial:")
    for r in pend.to_dict(orient="records"):
        tid = int(r["trial_id"])
        with st.container(border=True):
            top = st.columns([3.2, 1, 1, 1])
            pred = ("" if pd.isna(r["pred_mean"]) else f" · predicted {r['pred_mean']:.4f}"
                    + ("" if pd.isna(r["pred_std"]) else f" ± {r['pred_std']:.3g}"))
            steps_txt = "" if pd.isna(r["steps"]) else f"{int(r['steps']):,} steps"
            cost_txt = "" if pd.isna(r["cost"]) else f" · cost {r['cost']:.4g}"
            mix = common.mixture_text({d: r[f"w_{d}"] for d in cfg.domains})
            top[0].markdown(f"**Trial {tid}** `{r['run_id']}` · *{r['state']}* · {r['strategy'] or 'manual'}  \n"
                            f"{mix}  \n{human(r['model_params'])} params, {steps_txt}{cost_txt}{pred}")
            if r["reason"]:
                top[0].caption(f"Why: {r['reason']}")
            if top[1].button("Approve", key=f"approve_{tid}", disabled=r["state"] != "proposed", type="primary"):
                _apply("approve", [tid], name, changed)
            if top[2].button("Reject", key=f"reject_{tid}"):
                _apply("reject", [tid], name, changed)
            edit = top[3].toggle("Edit", key=f"edit_{tid}")
            if edit:
                cols = st.columns(len(cfg.domains) + 2)
                w = {d: cols[i].number_input(d, 0.0, 1.0, float(r[f"w_{d}"]), 0.01, format="%.4f",
                                             key=f"edit_w_{tid}_{d}") for i, d in enumerate(cfg.domains)}
                steps = cols[-2].number_input("steps", min_value=1, value=int(r["steps"]) if not pd.isna(r["steps"])
                                              else 1000, key=f"edit_steps_{tid}")
                cols[-1].write("")
                if cols[-1].button("Save", key=f"save_{tid}"):
                    _edit(tid, w, None, int(steps) if pd.isna(r["steps"]) or int(steps) != int(r["steps"]) else None)


def _table_edits(view: pd.DataFrame, edited: pd.DataFrame, wc: list[str]):
    """(trial_id, weights or None, model_params or None, steps or None) for rows the table changed."""
    out = []
    for (_, a), (_, b) in zip(view.iterrows(), edited.iterrows()):
        w_changed = any(abs(float(a[c]) - float(b[c])) > 1e-12 for c in wc if not pd.isna(b[c]))
        mp = int(b["model_params"]) if int(b["model_params"]) != int(a["model_params"]) else None
        st_ = (int(b["steps"]) if not pd.isna(b["steps"]) and (pd.isna(a["steps"]) or int(b["steps"]) != int(a["steps"]))
               else None)
        if w_changed or mp is not None or st_ is not None:
            weights = {c[2:]: float(b[c]) for c in wc} if w_changed else None
            out.append((int(a["trial_id"]), weights, mp, st_))
    return out


# ---- dispatch ------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _dispatchers() -> dict:
    """(db, study) -> (Popen, log path) of the dispatcher processes this server started."""
    return {}


def dispatcher(name: str):
    d = _dispatchers().get((common.db_path(), name))
    return d if d is not None and d[0].poll() is None else None


def dispatch_log(study: str) -> Path:
    """Where a dispatcher started from the app logs: ``<db dir>/mixplan-runs/<study>/dispatch-<time>.log``,
    beside the runs' own files (kept, like them)."""
    import time

    d = Path(common.db_path()).parent / "mixplan-runs" / study
    d.mkdir(parents=True, exist_ok=True)
    return d / f"dispatch-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}.log"


def dispatch_section(name: str) -> None:
    st.subheader("Run the approved trials")
    trials = common.trials(name)
    approved = int((trials["state"] == "approved").sum())
    cfg = common.config(name)
    c = st.columns([1, 0.8, 1.2, 2])
    executor = c[0].selectbox("Executor", EXECUTORS, key="disp_executor")
    workers = c[1].number_input("Workers", min_value=1, max_value=64, value=2, key="disp_workers")
    running = dispatcher(name)
    c[2].write("")
    clicked = c[2].button(f"Run approved ({approved})", key="dispatch_button", type="primary",
                          disabled=approved == 0 or running is not None)
    c[3].caption(f"Runner: `{cfg.runner.kind}`. The dispatcher runs as its own process (`mixplan run`), so "
                 "closing the page does not stop it; results land in the database as each trial ends.")
    if clicked:
        log = dispatch_log(name)
        argv = [sys.executable, "-m", "engine.cli", "run", "--study", name, "--db", common.db_path(),
                "--executor", executor, "--workers", str(int(workers))]
        with open(log, "wb") as fh:  # the child has its own copy of the descriptor; the server keeps none
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        _dispatchers()[(common.db_path(), name)] = (proc, log)
        common.after_write(f"Dispatching {approved} approved trial(s) on {executor} with {workers} worker(s) "
                     f"(pid {proc.pid}).")
        st.rerun()


#: How often the live status polls while the page is open (cheap: the cached data_version and trials).
LIVE_S = 3.0
STATES = ("proposed", "approved", "queued", "running", "done", "failed")
SNAPSHOT_KEY = "_proposals_status"


def status_snapshot(name: str, t: pd.DataFrame) -> tuple:
    """What the rest of the page depends on: the count per trial state and whether this server's
    dispatcher for the study is running."""
    counts = t["state"].value_counts()
    return (name, tuple(int(counts.get(s, 0)) for s in STATES), dispatcher(name) is not None)


@st.cache_data(show_spinner=False, max_entries=256)
def _failure(path: str, study: str, data_version: int, trial_id: int) -> dict:
    """The newest ``failed`` event of one trial (reason, log tail), however old (per data_version)."""
    ev = common._store(path).events(study, trial_id=int(trial_id))
    ev = ev[ev["kind"] == "failed"]
    if ev.empty:
        return {}
    d = ev["detail"].iloc[0]
    return json.loads(d) if isinstance(d, str) else dict(d or {})


def status_section(name: str) -> None:
    # the snapshot the whole page was drawn with: the live part reruns the app when it moves on
    st.session_state[SNAPSHOT_KEY] = status_snapshot(name, common.trials(name))

    @st.fragment(run_every=LIVE_S)
    def live() -> None:
        with common.guard("reading the trials' status"):
            t = common.trials(name)
            if status_snapshot(name, t) != st.session_state.get(SNAPSHOT_KEY):
                st.rerun(scope="app")  # trials changed state (here or from the CLI) or the dispatcher ended
            counts = t["state"].value_counts()
            c = st.columns(6)
            for i, s in enumerate(STATES):
                c[i].metric(s, int(counts.get(s, 0)))
            active = t[t["state"].isin(["queued", "running"])]
            if len(active):
                st.dataframe(active[["trial_id", "run_id", "state", "model_params", "steps", "attempts", "job_id"]],
                             hide_index=True, width="stretch")
            d = _dispatchers().get((common.db_path(), name))
            if d is not None:
                proc, log = d
                alive = proc.poll() is None
                st.caption(f"Dispatcher pid {proc.pid}: {'running' if alive else f'exited with status {proc.returncode}'}.")
                if log.exists() and log.stat().st_size:
                    with st.expander("Dispatcher log (tail)", expanded=not alive and proc.returncode not in (0, None)):
                        st.code(log.read_text(errors="replace")[-3000:], language=None)
            failed = t[t["state"] == "failed"]
            if len(failed):
                st.markdown(f"**Failed trials ({len(failed)})**")
                for r in failed.sort_values("trial_id", ascending=False).head(10).itertuples():
                    detail = _failure(common.db_path(), name, common.version(name), int(r.trial_id))
                    with st.expander(f"Trial {r.trial_id} ({r.run_id}): {detail.get('reason') or r.reason or 'failed'}"):
                        st.code(detail.get("log_tail") or "(no log captured)", language=None)
                        if st.button("Approve again (retry)", key=f"retry_{r.trial_id}"):
                            with common.guard(f"retrying trial {r.trial_id}"):
                                common.store().transition([int(r.trial_id)], "approved", actor="app", study=name)
                                common.after_write(f"Trial {r.trial_id} approved again; run it with the button above.")
                                st.rerun()

    st.subheader("Status")
    live()


def body() -> None:
    name = common.require_study()
    st.caption(f"Study **{name}**")
    common.show_flash()
    propose_section(name)
    with common.guard("listing the proposals"):
        pending_section(name)
    with common.guard("dispatching"):
        dispatch_section(name)
    status_section(name)


common.run_page(body)
