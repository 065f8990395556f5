"""Proposals: ask a strategy for the next runs, approve / reject / edit them, dispatch the
approved ones and watch them run (live: steps, loss, elapsed time, ETA, why a trial waits, the
log's tail), with failures and their log tails.

Layout rules (issue 14): nothing moves under the pointer -- messages live in a slot of fixed
height (:func:`app.common.message_slot`) and as toasts; the table's ticks are kept per trial id
(they survive reruns, and a table whose rows change is re-seeded from them, never shifted onto
other trials); the buttons count exactly what is ticked, and the ticks clear after an action.
Approving (and retrying) asks first, showing the number of trials and their total cost in the
study's unit. A study whose runner starts programs is only dispatched by a server started with
``--allow-commands``, after a dialog showing each trial's argv (engine.runners.safety).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

from app import common
from engine.dispatch.progress import run_log, study_progress
from engine.errors import ValidationError
from engine.numbers import human
from engine.runners.command import log_tail
from engine.runners.safety import (
    ALLOW_ENV,
    HOW_TO_ALLOW,
    SUBMISSION,
    check_runner_allowed,
    command_preview,
    commands_allowed,
    starts_programs,
)
from engine.strategies import propose, strategy_names

st.title("Proposals")
EXECUTORS = ("local", "slurm", "ray")
EDITOR_KEY = "proposals_editor"  # prefix: the editor's key also names its rows (see editor_key)
EDITOR_KEY_NOW = "_prop_editor_key"  # the key the editor was drawn with in the last run
SELECTED_KEY = "_prop_selected"  # study -> ticked trial ids
DRAFTS_KEY = "_prop_drafts"  # study -> {trial id: {column: unsaved value}}
GEN_KEY = "_prop_editor_gen"  # bumped after every action: a fresh editor, no ticks left
CONFIRM_KEY = "_prop_confirm"  # the action a dialog asks about


# ---- asking a strategy ---------------------------------------------------------------------
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


# ---- actions -------------------------------------------------------------------------------
def _clear_selection(name: str) -> None:
    """After an action: no tick and no draft is left, and the next run draws a fresh editor
    (the old one's ticks must not stay visible on rows they no longer apply to)."""
    st.session_state.setdefault(SELECTED_KEY, {}).pop(name, None)
    st.session_state.setdefault(DRAFTS_KEY, {}).pop(name, None)
    st.session_state[GEN_KEY] = st.session_state.get(GEN_KEY, 0) + 1


def _apply(action: str, ids: list[int], name: str, edits=()) -> None:
    """Approve, reject or retry ``ids``, first saving the table's unsaved ``edits`` (those of
    trials not being rejected): an action never drops what was typed into the table. An edit
    that fails validation stops the action with its message."""
    store = common.store()
    with common.guard(f"{action} trial(s) {ids}"):
        if not ids:
            raise ValidationError("no trial selected.", fix="tick trials in the table, or use a trial's own buttons.")
        keep = [e for e in edits if not (action == "reject" and e[0] in ids)]
        if keep:
            _save_edits(keep)
        if action == "approve":
            store.approve(name, ids, actor="app")
        elif action == "retry":
            store.transition(ids, "approved", actor="app", study=name)
        else:
            store.reject(name, ids, actor="app", reason="rejected in the app")
        done = {"approve": "Approved", "retry": "Approved again", "reject": "Rejected"}[action]
        common.after_write(f"{done} trial(s) {', '.join(map(str, ids))}"
                           + (f" (after saving the table's edits of trial(s) {', '.join(str(e[0]) for e in keep)})"
                              if keep else "") + ".")
        _clear_selection(name)
        st.rerun()


def _save_edits(changed) -> None:
    for tid, weights, mp, steps in changed:
        common.store().edit_trial(tid, weights=weights, model_params=mp, steps=steps, actor="app")


def _edit(trial_id: int, weights: dict[str, float], model_params: int | None, steps: int | None) -> None:
    with common.guard(f"editing trial {trial_id}"):
        common.store().edit_trial(int(trial_id), weights=weights, model_params=model_params, steps=steps, actor="app")
        common.after_write(f"Saved trial {trial_id} (weights re-validated).")
        st.rerun()


def ask(action: str, name: str, ids: list[int], edits=()) -> None:
    """Open the confirmation dialog for ``action`` on ``ids`` (drawn by :func:`confirm_dialogs`,
    in this run and every run until it is answered or dismissed)."""
    st.session_state[CONFIRM_KEY] = {"action": action, "study": name, "ids": [int(i) for i in ids],
                                     "edits": [list(e) for e in edits]}


def _dismiss() -> None:
    st.session_state.pop(CONFIRM_KEY, None)


def cost_of(name: str, ids: list[int], edits=()) -> tuple[float, int]:
    """(total cost of ``ids`` as they will run -- unsaved table edits of size / steps
    priced in -- , how many of them have no known cost)."""
    cfg = common.config(name)
    t = common.trials(name).set_index("trial_id")
    edit = {int(e[0]): e for e in edits}
    total, unknown = 0.0, 0
    for i in ids:
        r = t.loc[int(i)]
        cost = r["cost"]
        e = edit.get(int(i))
        if e is not None and (e[2] is not None or e[3] is not None):
            mp = int(e[2]) if e[2] is not None else int(r["model_params"])
            steps = int(e[3]) if e[3] is not None else (None if pd.isna(r["steps"]) else int(r["steps"]))
            cost = cfg.cost(mp, steps=steps, tokens=cfg.tokens_for(steps))
        if cost is None or pd.isna(cost):
            unknown += 1
        else:
            total += float(cost)
    return total, unknown


@st.dialog("Approve trials?", width="large", on_dismiss=_dismiss)
def approve_dialog(req: dict) -> None:
    name, ids, edits = req["study"], req["ids"], [tuple(e) for e in req["edits"]]
    cfg = common.config(name)
    unit = common.cost_unit(cfg)
    total, unknown = cost_of(name, ids, edits)
    n = len(ids)
    verb = "Approve again" if req["action"] == "retry" else "Approve"
    st.markdown(f"{verb} **{n} trial{'s' if n != 1 else ''}** ({', '.join(map(str, ids))}), for a total cost of "
                f"**{human(total)} {unit}**" + (f" (and {unknown} of unknown cost)" if unknown else "") + "?")
    t = common.trials(name)
    rows = t[t["trial_id"].isin(ids)][["trial_id", "run_id", "model_params", "steps", "cost"]]
    st.dataframe(rows, hide_index=True, width="stretch", column_config=common.table_config(rows))
    if cfg.budget:
        done = t[t["state"].isin(["done", "approved", "queued", "running"])]
        committed = float(pd.to_numeric(done["cost"], errors="coerce").fillna(0).sum())
        st.caption(f"Budget {human(cfg.budget)} {unit}: {human(committed)} spent or committed (done, approved, "
                   f"queued, running); with these {human(committed + total)}.")
    if edits:
        st.caption(f"The table's unsaved edits of trial(s) {', '.join(str(e[0]) for e in edits)} are saved first "
                   "(weights re-validated); their cost above includes them.")
    st.caption("Approved trials run when you press **Run approved** (or `mixplan run`); a worker then spends "
               "this compute.")
    c = st.columns(2)
    if c[0].button(f"{verb} {n} trial{'s' if n != 1 else ''}", key="confirm_approve", type="primary"):
        _dismiss()
        _apply(req["action"], ids, name, edits)
    if c[1].button("Cancel", key="confirm_cancel"):
        _dismiss()
        st.rerun()


@st.dialog("Start these programs?", width="large", on_dismiss=_dismiss)
def dispatch_dialog(req: dict) -> None:
    """The exact argv of each approved trial of a study whose runner starts programs, before
    anything starts (only reachable on a server started with --allow-commands)."""
    name = req["study"]
    cfg = common.config(name)
    store = common.store()
    approved = store.trials(name, ["approved"])
    from engine.dispatch.dispatcher import runs_root

    previews = command_preview(cfg, approved, runs_root(store, name))
    st.markdown(f"Dispatching starts **{len(previews)} program(s)** on this server as user "
                f"`{_user()}` (never through a shell: each list below is the argv itself).")
    r = cfg.runner
    st.caption(f"Template: `{json.dumps(list(r.argv))}` · timeout {common.duration(r.timeout_s)} per attempt, "
               f"{r.retries} retr{'y' if r.retries == 1 else 'ies'}"
               + (f" · cwd `{r.options['cwd']}`" if r.options.get("cwd") else "")
               + (f" · extra environment: {', '.join(sorted(r.options['env']))}" if r.options.get("env") else "")
               + f". `{SUBMISSION}` is the folder name each hand-over picks.")
    for p in previews:
        st.markdown(f"**Trial {p.trial_id}** `{p.run_id}`" + (f" -- cannot start: {p.error}" if p.error else ""))
        st.code(json.dumps(list(p.argv)), language="json", wrap_lines=True)
    c = st.columns(2)
    if c[0].button(f"Start {len(previews)} program(s)", key="confirm_dispatch", type="primary",
                   disabled=not previews):
        _dismiss()
        start_dispatcher(name, req["executor"], int(req["workers"]), len(previews))
    if c[1].button("Cancel", key="confirm_dispatch_cancel"):
        _dismiss()
        st.rerun()


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, AttributeError):  # pragma: no cover - not POSIX
        return os.environ.get("USER", "?")


def confirm_dialogs() -> None:
    """Draw the pending confirmation, if any (one dialog per run)."""
    req = st.session_state.get(CONFIRM_KEY)
    if not req or req.get("study") != common.current_study():
        return
    if req["action"] in ("approve", "retry"):
        approve_dialog(req)
    elif req["action"] == "dispatch":
        dispatch_dialog(req)


# ---- the table of proposed and approved trials ---------------------------------------------
def editor_key(name: str, ids: list[int]) -> str:
    """The editor's key: changes when the rows (trial ids) change or after an action, so the
    grid's edits, which it keeps per row position, never land on another trial."""
    sig = hashlib.sha1(json.dumps([name, ids]).encode()).hexdigest()[:10]
    return f"{EDITOR_KEY}_{st.session_state.get(GEN_KEY, 0)}_{sig}"


def pending_section(name: str) -> None:
    cfg = common.config(name)
    trials = common.trials(name)
    pend = trials[trials["state"].isin(["proposed", "approved"])].reset_index(drop=True)
    st.subheader(f"Proposed and approved ({len(pend)})")
    if pend.empty:
        st.caption("Nothing waiting for a decision. Ask a strategy above.")
        return
    wc = [f"w_{d}" for d in cfg.domains]
    base = pend[["trial_id", "state", "run_id"] + wc + ["model_params", "steps", "cost", "pred_mean", "pred_std",
                                                         "strategy", "reason"]].copy()
    ids = base["trial_id"].astype(int).tolist()
    ticked = set(st.session_state.setdefault(SELECTED_KEY, {}).get(name, ())) & set(ids)
    drafts = {int(k): v for k, v in st.session_state.setdefault(DRAFTS_KEY, {}).get(name, {}).items() if int(k) in ids}
    view = base.copy()
    view.insert(0, "select", view["trial_id"].isin(ticked))
    for tid, cols in drafts.items():  # unsaved edits typed before the rows changed
        for col, v in cols.items():
            view.loc[view["trial_id"] == tid, col] = v
    key = editor_key(name, ids)
    st.session_state[EDITOR_KEY_NOW] = key
    # the table keeps the height of the most rows it had in this session (up to 12): rows that
    # leave (approved trials being dispatched) do not pull the buttons up under the pointer
    rows = min(12, max(len(view), st.session_state.get(f"_prop_rows_{name}", 0)))
    st.session_state[f"_prop_rows_{name}"] = rows
    edited = st.data_editor(
        view, key=key, hide_index=True, width="stretch", height=38 + 35 * rows,
        disabled=["trial_id", "state", "run_id", "cost", "pred_mean", "pred_std", "strategy", "reason"],
        column_config={"select": st.column_config.CheckboxColumn("✓", help="select for the buttons below"),
                       **{c: st.column_config.NumberColumn(c[2:], min_value=0.0, max_value=1.0, format="%.4f")
                          for c in wc},
                       "model_params": st.column_config.NumberColumn("params", format="compact"),
                       "steps": st.column_config.NumberColumn("steps", format="localized"),
                       "cost": st.column_config.NumberColumn("cost", format="compact",
                                                             help=f"in {common.cost_unit(cfg)}"),
                       "pred_mean": st.column_config.NumberColumn("pred mean", format="%.4f"),
                       "pred_std": st.column_config.NumberColumn("pred std", format="%.3g")})
    selected = edited.loc[edited["select"], "trial_id"].astype(int).tolist()
    changed = _table_edits(base, edited, wc)
    st.session_state[SELECTED_KEY][name] = selected
    st.session_state[DRAFTS_KEY][name] = {tid: cols for tid, cols in _drafts(base, edited, wc).items()}
    proposed_ids = set(pend.loc[pend["state"] == "proposed", "trial_id"].astype(int))
    sel_proposed = [i for i in selected if i in proposed_ids]
    b = st.columns(5)
    if b[0].button(f"Approve selected ({len(sel_proposed)})", key="approve_selected", disabled=not sel_proposed,
                   help="Asks first, showing their total cost. Counts the ticked trials that are proposed."):
        ask("approve", name, sel_proposed, changed)
    if b[1].button(f"Reject selected ({len(selected)})", key="reject_selected", disabled=not selected):
        _apply("reject", selected, name, changed)
    proposed = pend.loc[pend["state"] == "proposed", "trial_id"].astype(int).tolist()
    if b[2].button(f"Approve all proposed ({len(proposed)})", key="approve_all", disabled=not proposed,
                   help="Asks first, showing their total cost."):
        ask("approve", name, proposed, changed)
    if b[3].button(f"Save table edits ({len(changed)})", key="save_edits", disabled=not changed):
        with common.guard("saving the table's edits"):
            _save_edits(changed)
            common.after_write(f"Saved edits of trial(s) {', '.join(str(c[0]) for c in changed)} (weights re-validated).")
            _clear_selection(name)
            st.rerun()
    # below the buttons, so that it appearing or going moves nothing above the pointer
    notes = []
    if selected and len(sel_proposed) != len(selected):
        notes.append(f"{len(selected)} ticked, {len(selected) - len(sel_proposed)} of them already approved.")
    if changed:
        notes.append(f"Unsaved table edits of trial(s) {', '.join(str(c[0]) for c in changed)}: the buttons above "
                     "save them first (weights re-validated).")
    st.caption(" ".join(notes) if notes else "Tick trials for the buttons above; every trial also has its own "
               "buttons below.")
    for r in pend.to_dict(orient="records"):
        tid = int(r["trial_id"])
        with st.container(border=True):
            top = st.columns([3.2, 1, 1, 1])
            pred = ("" if pd.isna(r["pred_mean"]) else f" · predicted {r['pred_mean']:.4f}"
                    + ("" if pd.isna(r["pred_std"]) else f" ± {r['pred_std']:.3g}"))
            steps_txt = "" if pd.isna(r["steps"]) else f"{int(r['steps']):,} steps"
            cost_txt = "" if pd.isna(r["cost"]) else f" · cost {common.cost_text(r['cost'], common.cost_unit(cfg))}"
            mix = common.mixture_text({d: r[f"w_{d}"] for d in cfg.domains})
            top[0].markdown(f"**Trial {tid}** `{r['run_id']}` · *{r['state']}* · {r['strategy'] or 'manual'}  \n"
                            f"{mix}  \n{human(r['model_params'])} params, {steps_txt}{cost_txt}{pred}")
            if r["reason"]:
                top[0].caption(f"Why: {r['reason']}")
            if top[1].button("Approve", key=f"approve_{tid}", disabled=r["state"] != "proposed", type="primary",
                             help="Asks first, showing its cost."):
                ask("approve", name, [tid], changed)
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


def _drafts(base: pd.DataFrame, edited: pd.DataFrame, wc: list[str]) -> dict[int, dict]:
    """{trial id: {column: value}} of the cells the table changed (kept per trial id, so they
    follow their trial when the rows change)."""
    out: dict[int, dict] = {}
    for (_, a), (_, b) in zip(base.iterrows(), edited.iterrows()):
        cells = {c: b[c] for c in wc + ["model_params", "steps"]
                 if not (pd.isna(a[c]) and pd.isna(b[c])) and (pd.isna(a[c]) != pd.isna(b[c]) or a[c] != b[c])}
        if cells:
            out[int(a["trial_id"])] = {c: (None if pd.isna(v) else (float(v) if c.startswith("w_") else int(v)))
                                       for c, v in cells.items()}
    return out


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


def start_dispatcher(name: str, executor: str, workers: int, approved: int) -> None:
    """Start `mixplan run` for the study as its own process -- after the server-side check that
    this server may dispatch the study's runner (whatever the page's buttons showed)."""
    with common.guard("dispatching"):
        allowed = commands_allowed()
        check_runner_allowed(common.store().get_config(name), allowed=allowed, action="dispatch the trials of")
        log = dispatch_log(name)
        argv = [sys.executable, "-m", "engine.cli", "run", "--study", name, "--db", common.db_path(),
                "--executor", executor, "--workers", str(int(workers))]
        # the dispatcher re-checks: without the opt-in it refuses program-starting runners itself
        env = dict(os.environ, **{ALLOW_ENV: "1" if allowed else "0"})
        with open(log, "wb") as fh:  # the child has its own copy of the descriptor; the server keeps none
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        _dispatchers()[(common.db_path(), name)] = (proc, log)
        common.after_write(f"Dispatching {approved} approved trial(s) on {executor} with {workers} worker(s) "
                           f"(pid {proc.pid}).")
        st.rerun()


def dispatch_section(name: str) -> None:
    st.subheader("Run the approved trials")
    trials = common.trials(name)
    approved = int((trials["state"] == "approved").sum())
    cfg = common.config(name)
    programs = starts_programs(cfg)
    allowed = commands_allowed()
    blocked = programs and not allowed
    c = st.columns([1, 0.8, 1.2, 2])
    executor = c[0].selectbox("Executor", EXECUTORS, key="disp_executor")
    workers = c[1].number_input("Workers", min_value=1, max_value=64, value=2, key="disp_workers")
    running = dispatcher(name)
    c[2].write("")
    why = (f"This study's runner (`{cfg.runner.kind}`) starts programs named in its config, and this server was "
           "started without --allow-commands, so the app does not dispatch it. To run it, " + HOW_TO_ALLOW)
    clicked = c[2].button(f"Run approved ({approved})", key="dispatch_button", type="primary",
                          disabled=approved == 0 or running is not None or blocked,
                          help=why if blocked else ("Shows each trial's argv and asks first." if programs else None))
    c[3].caption(f"Runner: `{cfg.runner.kind}`. The dispatcher runs as its own process (`mixplan run`), so "
                 "closing the page does not stop it; results land in the database as each trial ends.")
    if blocked:
        st.warning(why, icon=":material/lock:")
    if clicked and not blocked:  # (start_dispatcher checks again, whatever reaches it)
        if programs:
            st.session_state[CONFIRM_KEY] = {"action": "dispatch", "study": name, "executor": executor,
                                             "workers": int(workers), "ids": [], "edits": []}
        else:
            start_dispatcher(name, executor, int(workers), approved)


# ---- live status ---------------------------------------------------------------------------
#: How often the live status polls while the page is open (cheap: the cached data_version and
#: trials, and the spool files of the running trials).
LIVE_S = 2.0
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


def progress_rows(name: str) -> None:
    """One progress bar per queued / running trial (engine.dispatch.progress: from the files the
    workers write), each running one with its log's tail on demand."""
    store = common.store()
    active = store.trials(name, ["queued", "running"])
    progress = study_progress(store, name, trials=active, objective=common.config(name).objective)
    if not progress:
        return
    st.markdown(f"**Queued and running ({len(progress)})**")
    trials = {t.trial_id: t for t in active}
    for p in progress:
        st.progress(p.fraction or 0.0, text=f"{p.text()} · {human(p.model_params)} params")
        t = trials.get(p.trial_id)
        if p.state == "running" and t is not None:
            with st.expander(f"Log of trial {p.trial_id} ({p.run_id}), tail"):
                path = run_log(store, name, t)
                st.code(log_tail(path) or "(nothing logged yet)" if path else "(no log file yet)", language=None)
                if path:
                    st.caption(f"`{path}`")


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
                c[i].metric(s, common.count(int(counts.get(s, 0))))
            if int(counts.get("queued", 0)) + int(counts.get("running", 0)):
                progress_rows(name)
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
                store = common.store()
                for r in failed.sort_values("trial_id", ascending=False).head(10).itertuples():
                    detail = _failure(common.db_path(), name, common.version(name), int(r.trial_id))
                    with st.expander(f"Trial {r.trial_id} ({r.run_id}): {detail.get('reason') or r.reason or 'failed'}"):
                        st.code(detail.get("log_tail") or "(no log captured)", language=None)
                        path = run_log(store, name, store.get_trial(int(r.trial_id)))
                        if path:
                            st.caption(f"Full log: `{path}`")
                        if st.button("Approve again (retry)", key=f"retry_{r.trial_id}",
                                     help="Asks first, showing its cost."):
                            ask("retry", name, [int(r.trial_id)])
                            st.rerun(scope="app")  # the dialog opens with the whole page

    st.subheader("Status")
    live()


def body() -> None:
    name = common.require_study()
    st.caption(f"Study **{name}** · costs in {common.cost_unit(common.config(name))}")
    common.message_slot()
    propose_section(name)
    with common.guard("listing the proposals"):
        pending_section(name)
    with common.guard("dispatching"):
        dispatch_section(name)
    status_section(name)
    with common.guard("asking for a confirmation"):
        confirm_dialogs()


common.run_page(body)
