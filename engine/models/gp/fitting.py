"""Learning MFMS-GP's hyperparameters: maximise the marginal likelihood, judge the outcome.

BoTorch's ``fit_gpytorch_mll`` (L-BFGS-B) runs one attempt of ``maxiter`` steps; its last point
is kept where it improves the likelihood, even if L-BFGS-B ended abnormally (BoTorch's default
would roll such a fit back to its start). Where the fit raises or makes the likelihood worse,
the starting hyperparameters are restored and the caller is told why.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def neg_mll(mll) -> float:
    """The negative marginal log likelihood (with priors) at the current hyperparameters."""
    model = mll.model
    was_training = model.training
    mll.train()
    try:
        with torch.no_grad():
            out = model(*model.train_inputs)
            return float(-mll(out, model.train_targets, *model.train_inputs))
    finally:
        mll.train(was_training)


def fit_hypers(mll, maxiter: int) -> tuple[bool, str]:
    """Maximise the marginal likelihood (L-BFGS-B, ``maxiter`` steps, one attempt); returns
    (ok, message). The optimiser's point is kept where it improves the likelihood, even if
    L-BFGS-B ended abnormally (its last point is its best; BoTorch's default would roll it back
    to the start); where the fit raises or makes the likelihood worse, the starting
    hyperparameters are restored and ok is False, with the reason in the message."""
    from botorch.fit import fit_gpytorch_mll

    start = {k: v.detach().clone() for k, v in mll.state_dict().items()}
    notes: list[str] = []

    def keep(w) -> bool:  # accept the optimiser's point; judged below by the likelihood
        notes.append(str(w.message).splitlines()[0][:160])
        return True

    try:
        f0 = neg_mll(mll)
    except Exception:  # noqa: BLE001 - a start that cannot be evaluated still gets its fit
        f0 = float("nan")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gpytorch's numerical warnings; outcomes are judged below
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}}, max_attempts=1,
                             warning_handler=keep)
        f1 = neg_mll(mll)
        if not np.isfinite(f1):
            raise FloatingPointError(f"the marginal likelihood is not finite after fitting ({-f1})")
        if np.isfinite(f0) and f1 > f0 + 1e-9 * max(1.0, abs(f0)):
            raise FloatingPointError(f"the fit made the marginal likelihood worse ({-f0:.6g} -> {-f1:.6g})")
    except Exception as exc:  # noqa: BLE001 - reported through the return value and a warning
        mll.load_state_dict(start)
        mll.eval()
        return False, f"hyperparameter fit failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
    mll.eval()
    msg = f"ok (-mll {f0:.6g} -> {f1:.6g})"
    if notes:
        msg += "; optimiser: " + "; ".join(dict.fromkeys(notes))
    return True, msg
