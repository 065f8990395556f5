"""What every page of the app shares: the store, the chosen study, cached data and model fits,
and turning errors into messages.

Caching: the Store (a path, no open connection) is a ``cache_resource``; run tables are
``cache_data`` keyed by (db, study, data_version); fitted loss models are ``cache_resource`` keyed
by (db, study, results key, model, objective) with the data_version they were fitted at, where the results key (:func:`results_key`) changes
with every new checkpoint, so new results invalidate a fit while approving or editing proposals
(which also bump data_version) does not force a refit. Slow fits run in the background
(:func:`background`): a page draws at once and fills in when the fit is done.

Pages stay true while open (:func:`watch`, :func:`live_counts`: a cheap poll of the trial
counts), keep messages in a slot that moves nothing (:func:`message_slot`), and format numbers
with engine.numbers (:func:`table_config` for tables).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import streamlit as st

from engine.errors import MixplanError
from engine.numbers import cost_text, cost_unit, count, duration, human  # noqa: F401 - the pages' formatters
from engine.store import Store

log = logging.getLogger("mixplan.app")
#: How long a page waits for a model fit before drawing the rest and finishing it in the
#: background (env MIXPLAN_APP_FIT_WAIT; the AppTests set it high to run synchronously).
FIT_WAIT_S = float(os.environ.get("MIXPLAN_APP_FIT_WAIT", "1.5"))
MAX_JOBS = 32
DB_ENV = "MIXPLAN_DB"
STUDY_KEY = "study"
PENDING_STUDY_KEY = "_pending_study"


def db_path() -> str:
    """The database the app serves (env MIXPLAN_DB, set by `mixplan app --db`)."""
    return str(Path(os.environ.get(DB_ENV, "runs.duckdb")).expanduser().resolve())


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    return Store(path)


def store() -> Store:
    return _store(db_path())


@contextmanager
def guard(what: str = ""):
    """Show a MixplanError as a message a researcher can act on; anything else as a short error
    (the traceback goes to the server log, not the page)."""
    try:
        yield
    except MixplanError as exc:
        st.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - a page must never show a traceback
        log.exception("unexpected error%s", f" while {what}" if what else "")
        st.error(f"Something went wrong{' while ' + what if what else ''}: {type(exc).__name__}: {exc}. "
                 "The details are in the server's log.")


def run_page(body: Callable[[], None]) -> None:
    with guard():
        body()


# ---- the study ----------------------------------------------------------------------------
#: Within this many seconds the app reuses a study's data_version / the study list instead of
#: asking the database again (one page view asks several times; each open costs ~50-150 ms).
FRESH_S = 1.0


@st.cache_data(show_spinner=False, ttl=FRESH_S)
def _study_names(path: str) -> list[str]:
    return _store(path).study_names()


def study_names() -> list[str]:
    return _study_names(db_path())


def current_study() -> str | None:
    """The study picked in the sidebar (None when the database has none)."""
    name = st.session_state.get(STUDY_KEY)
    names = study_names()
    if name in names:
        return name
    return names[0] if names else None


def select_study(name: str) -> None:
    """Make ``name`` the current study from the next run on (the sidebar's widget is already drawn)."""
    st.session_state[PENDING_STUDY_KEY] = name


def require_study() -> str:
    """The current study, or stop the page with a pointer to the Study page."""
    name = current_study()
    if name is None:
        st.info("This database has no study yet. Create one on the **Study** page (from a TOML config or a "
                "run table), or with `mixplan study create --config FILE` / `mixplan import FILE --study NAME`.")
        st.stop()
    return name


@st.cache_data(show_spinner=False, ttl=FRESH_S)
def _version(path: str, study: str) -> int:
    return _store(path).data_version(study)


def version(study: str) -> int:
    """The study's data_version (bumped by every write to it; at most FRESH_S old)."""
    return _version(db_path(), study)


@st.cache_resource(show_spinner=False, max_entries=32)
def _config(path: str, study: str, data_version: int):
    return _store(path).get_config(study)


def config(study: str):
    """The study's config (cached per data_version)."""
    return _config(db_path(), study, version(study))


@st.cache_data(show_spinner=False, max_entries=16)
def _runs(path: str, study: str, data_version: int) -> pd.DataFrame:
    return _store(path).runs_frame(study, meta=True)


def runs(study: str) -> pd.DataFrame:
    """The study's run table with meta columns (cached until its data_version changes)."""
    return _runs(db_path(), study, version(study))


@st.cache_data(show_spinner=False, max_entries=16)
def _study_domains(path: str, study: str, data_version: int) -> dict[str, list[str]]:
    return _store(path).study_domains(study)


def study_domains(study: str) -> dict[str, list[str]]:
    """{"train", "eval", "metric"} domains of the study (cached per data_version)."""
    return _study_domains(db_path(), study, version(study))


@st.cache_data(show_spinner=False, max_entries=16)
def _trials(path: str, study: str, data_version: int) -> pd.DataFrame:
    return _store(path).trials_frame(study)


def trials(study: str) -> pd.DataFrame:
    return _trials(db_path(), study, version(study))


# ---- loss models ---------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, ttl=3600)
def _available_models() -> list[str]:
    from engine.export import available_models

    return available_models()


def available_models() -> list[str]:
    return _available_models()


def results_key(study: str) -> str:
    """Changes exactly when the study's results change: '<checkpoints>:<last checkpoint id>'
    (checkpoints are only ever added; mixtures of trials with results never change)."""
    r = runs(study)
    return f"{len(r)}:{int(r['checkpoint_id'].max()) if len(r) else 0}"


@st.cache_resource(show_spinner=False, max_entries=12)
def _fit(path: str, study: str, results: str, model: str, objective: str):
    """(fitted model, data_version of the runs it was fitted on)."""
    from engine.export import fit_study_model, runs_at_version

    st_ = _store(path)
    runs, data_version = runs_at_version(st_, study)
    return fit_study_model(st_, study, model, objective, runs=runs), data_version


def _fitted(path: str, study: str, results: str, model: str, objective: str):
    """The fitted loss model (cached in :func:`_fit` until new results arrive)."""
    return _fit(path, study, results, model, objective)[0]


@st.cache_resource(show_spinner=False, max_entries=64)
def _optimum(path: str, study: str, results: str, model: str, objective: str, direction: str, model_params: int,
             steps: float | None, tokens: float | None):
    """The fitted model's optimum at one scale, searched in ``direction`` (part of the key: from
    :func:`direction`, never the study's direction for another objective)."""
    cfg = _store(path).get_config(study)
    m = _fitted(path, study, results, model, objective)
    return m.optimum(int(model_params), steps=steps, tokens=tokens, bounds=cfg.bounds_array(),
                     direction=direction)


@st.cache_resource(show_spinner=False, max_entries=8)
def _recommendation(path: str, study: str, results: str):
    """The study's one recommendation (engine.recommendation: backtest, calibrated model, its
    optimum at the target; cached on disk per data version, so the CLI and every page agree)."""
    from engine.recommendation import recommend

    return recommend(_store(path), study)


def recommendation(study: str):
    """The study's recommendation, fitted in the background (None while it is being computed:
    the page draws the rest and reruns when it is in)."""
    key = (db_path(), study, results_key(study))
    return background(("recommendation",) + key, "Backtesting the models and fitting the recommended one",
                      _recommendation, *key)


def direction(study: str, objective: str) -> str:
    """Which way ``objective`` is optimised in ``study`` (engine.config.objective_direction)."""
    return config(study).direction_for(objective)


def objective_options(run_table: pd.DataFrame, preferred: str) -> list[str]:
    from engine.plots import objectives_of

    opts = objectives_of(run_table)
    if preferred in opts:
        opts.remove(preferred)
        opts.insert(0, preferred)
    return opts or [preferred]


def mixture_text(weights: dict[str, float]) -> str:
    return "  ".join(f"{d} {w:.2f}" for d, w in weights.items())


# ---- messages: in a slot of fixed height, so nothing moves under the pointer ----------------
FLASH_KEY = "_flash"
#: Height of the message slot (px): two lines of a message box; longer messages scroll in it.
SLOT_PX = 76


def flash(message: str, kind: str = "success") -> None:
    """A message about what the app just did, shown in :func:`message_slot` from the next run
    on (st.rerun drops what this run drew) until the next action replaces it, and once as a
    toast. Messages of one action are kept together."""
    msgs = st.session_state.get(FLASH_KEY)
    if not msgs or not st.session_state.get("_flash_new"):  # the first message of a new action
        msgs = (time.strftime("%H:%M:%S"), [])
    msgs[1].append((kind, message))
    st.session_state[FLASH_KEY] = msgs
    st.session_state["_flash_new"] = True


def after_write(message: str, kind: str = "success") -> None:
    """After the app wrote to the database: forget the cached versions / study list (so the
    rerun reads fresh state) and show ``message`` after the rerun."""
    _version.clear()
    _study_names.clear()
    _state_counts.clear()
    flash(message, kind)


def message_slot(*, fixed: bool = True) -> None:
    """The last action's messages, kept until the next action. ``fixed``: in a box of fixed
    height drawn whether or not there is a message, so a message that appears (or goes) never
    moves the table and buttons below it -- which once put a second click on "Approve
    selected"; pages without such buttons draw messages only when there are some. A new
    message also pops up as a toast (toasts float; they move nothing)."""
    msgs = st.session_state.get(FLASH_KEY)
    if not fixed and not msgs:
        return
    box = st.container(height=SLOT_PX, border=False, key="message_slot") if fixed else st.container()
    with box:
        if not msgs:
            st.caption("Messages about what you do here appear in this box.")
            return
        when, items = msgs
        for kind, message in items:
            getattr(st, kind)(f"{message}  \n*{when}*" if kind != "error" else message)
    if st.session_state.pop("_flash_new", False):
        for kind, message in items:
            st.toast(message, icon=":material/check_circle:" if kind == "success" else ":material/info:")


def show_flash() -> None:
    """The messages of the last action, where there are some (:func:`message_slot`, not fixed)."""
    message_slot(fixed=False)


def metric(where, label: str, value, note: str | None = None, help: str | None = None) -> None:
    """A figure with a caption under it. st.metric's ``delta`` draws an arrow and a colour that
    say "this changed"; a caption that is no change (a std, a count of runs) goes here instead."""
    where.metric(label, value, help=help)
    if note:
        where.caption(note)


def table_config(df: pd.DataFrame, **overrides) -> dict:
    """Column formats every table of the app shares: sizes, token counts and costs in the
    compact form (1M, 614B: the same as :func:`human` in the text), steps with separators,
    mixture weights to 3 decimals. ``overrides``: column -> column config."""
    cfg: dict = {}
    for c in df.columns:
        if c in ("model_params", "params"):
            cfg[c] = st.column_config.NumberColumn("params", format="compact")
        elif c in ("tokens", "cost", "cumulative_cost", "budget", "flops") or c.endswith("_tokens"):
            cfg[c] = st.column_config.NumberColumn(c, format="compact")
        elif c == "steps":
            cfg[c] = st.column_config.NumberColumn("steps", format="localized")
        elif c.startswith("w_"):
            cfg[c] = st.column_config.NumberColumn(c[2:], format="%.3f")
    cfg.update(overrides)
    return cfg


# ---- counts that stay true -------------------------------------------------------------------
#: How often every page asks whether the study's trials changed state (one cached query: the
#: data_version and the count per state; shared by all sessions for FRESH_S).
WATCH_S = 3.0
COUNTS_KEY = "_counts_drawn"


@st.cache_data(show_spinner=False, ttl=FRESH_S)
def _state_counts(path: str, study: str) -> tuple[int, dict[str, int]]:
    return _store(path).state_counts(study)


def state_counts(study: str) -> dict[str, int]:
    """Trials per state of the study (at most FRESH_S old)."""
    return dict(_state_counts(db_path(), study)[1])


def counts_text(counts: dict[str, int]) -> str:
    """'64 finished runs · 1 running · 1 queued · 2 approved · 3 proposed · 1 failed': finished
    (done) runs only, the rest apart -- the states of the Proposals page's Status."""
    text = f"**{count(counts.get('done', 0))}** finished run{'s' if counts.get('done', 0) != 1 else ''}"
    for s in ("running", "queued", "approved", "proposed", "failed"):
        if counts.get(s):
            text += f" · {count(counts[s])} {s}"
    return text


def finished(counts: dict[str, int]) -> tuple[int, int]:
    """(done, failed): the counts whose change brings new final results to draw."""
    return int(counts.get("done", 0)), int(counts.get("failed", 0))


def watch(study: str) -> None:
    """Keep the open page true, cheaply. Every WATCH_S a fragment reads the study's trial
    counts (one cached query), shows them, and reruns the whole page when a trial finished or
    failed since the page was drawn (new results: tables, charts and fits follow). Counts of
    running and pending trials change more often; the parts of a page that show them redraw
    themselves (:func:`live_counts`) without rerunning the page. Called once per run, in the
    sidebar."""
    st.session_state[COUNTS_KEY] = (study, finished(state_counts(study)))

    @st.fragment(run_every=WATCH_S)
    def poll() -> None:
        with guard("watching the study"):
            now = state_counts(study)
            if (study, finished(now)) != st.session_state.get(COUNTS_KEY):
                st.rerun(scope="app")
            st.caption(counts_text(now))

    poll()


def live_counts(study: str, draw: Callable[[dict[str, int]], None]) -> None:
    """Call ``draw(counts)`` (the study's trials per state) in a fragment that redraws itself
    every WATCH_S: counts on a page stay true without rerunning the page."""

    @st.fragment(run_every=WATCH_S)
    def part() -> None:
        with guard("reading the trial counts"):
            draw(state_counts(study))

    part()


# ---- slow work in the background -----------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _pool() -> ThreadPoolExecutor:
    """One worker: model fits queue rather than fight for the two cores."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixplan-fit")


@st.cache_resource(show_spinner=False)
def _jobs() -> dict:
    return {}


def background(key: tuple, label: str, fn, *args):
    """Run ``fn(*args)`` (a model fit, an optimum search) off the script thread, once per ``key``.

    Returns its result when it is ready within ``FIT_WAIT_S``; else draws a notice with the
    elapsed time, polls (st.fragment with run_every) and reruns the page when the result is in,
    and returns None so the page draws everything that does not need it. An error raised by
    ``fn`` is raised here (and shown by :func:`guard`); the next view tries again."""
    jobs = _jobs()
    wait = float(os.environ.get("MIXPLAN_APP_FIT_WAIT", FIT_WAIT_S))
    if key not in jobs:
        while len(jobs) >= MAX_JOBS:
            old = next((k for k, j in jobs.items() if j[0].done()), None)
            if old is None:
                break
            jobs.pop(old)
        jobs[key] = (_pool().submit(fn, *args), time.time(), label)
    fut, t0, _ = jobs[key]
    try:
        return fut.result(timeout=wait)
    except FutureTimeout:
        pass
    except BaseException:
        jobs.pop(key, None)
        raise
    _waiting(key, label, t0)
    return None


def _waiting(key: tuple, label: str, t0: float) -> None:
    ahead = sum(1 for k, j in _jobs().items() if not j[0].done() and j[1] < t0)

    @st.fragment(run_every=1.5)
    def poll() -> None:
        job = _jobs().get(key)
        if job is None or job[0].done():
            st.rerun(scope="app")
        st.info(f":material/hourglass_top: {label} (running for {time.time() - t0:.0f} s"
                + (f", {ahead} fit(s) ahead of it" if ahead else "") + "). The page fills in by itself when it "
                "is done; the result is cached until new results arrive.")

    poll()
