"""The report's numbers: frontier.csv rows, exponents per method, hold-out errors, exclusions, warnings, and
the sweep's cost and failures.

Pure functions over the fit (fitting/result.FitResult) and the runs tables; nothing here draws, formats
for a page, or writes files. Every interval is the fit's bootstrap percentile interval (fit.ci).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd

from trainers.api import Status
from orchestrator.fitting import methods as registry
from orchestrator.fitting.result import FitResult, MethodResult
from orchestrator.report.text import sci

QUANTITIES = ("N_opt", "D_opt", "tokens_per_param", "loss")
GRAD_WARN = 1e-6
"""Gradient norm (natural coordinates) above which an unconverged parametric fit is worth a warning."""
# When a check is worth a warning: the hold-out's error on the held-out budget's best loss, its N_opt ratio,
# and how many decades of extrapolation make the frontier a guess more than a fit.
HOLDOUT_LOSS_TOL, HOLDOUT_RATIO_TOL, FAR_DECADES = 0.02, 1.5, 2.0


def free_surfaces() -> tuple[str, ...]:
    """The fitted surfaces whose E is free (parametric, its VPNLS cross-check), in the registry's order."""
    return registry.names(kinds=(registry.Kind.SURFACE,), derived=False)


def ok_methods(result: FitResult) -> list[str]:
    return list(result.ok_methods())


def primary_method(result: FitResult) -> str | None:
    """The method the headline reports: the first one in fit.methods that succeeded and predicts a frontier."""
    return next((m for m, r in result.ok_methods().items() if r.predictions), None)


def surface_method(result: FitResult) -> str | None:
    """The fitted L(N, D) the surface and residual figures show (parametric, else its VPNLS cross-check)."""
    return next((m for m in free_surfaces() if m in result.ok_methods()), None)


def swept_range(result: FitResult) -> tuple[float, float]:
    """Smallest and largest swept budget (the IsoFLOP budgets, else the range of the fitted runs' C)."""
    return float(result.swept_range[0]), float(result.swept_range[1])


def bounds(entry: MethodResult, quantity: str, *, budget: str | None = None) -> tuple[float, float] | None:
    """The CI of a quantity (of a prediction at `budget` when given), or None when there is none."""
    return entry.interval(quantity, budget=budget)


def frontier_rows(result: FitResult, *, swept: tuple[float, float]) -> pd.DataFrame:
    """frontier.csv: one row per (method, target budget) with each quantity's CI bounds (NaN: no interval).

    `extrapolation` is C over the largest swept budget (below 1: inside or under the swept range).
    """
    rows, primary = [], primary_method(result)
    for method, entry in result.ok_methods().items():
        level = entry.level or np.nan
        for key, pred in (entry.predictions or {}).items():
            row = {"method": method, "C": pred["C"]}
            for q in QUANTITIES:
                lo, hi = bounds(entry, q, budget=key) or (np.nan, np.nan)
                row.update({q: pred[q], f"{q}_lo": lo, f"{q}_hi": hi})
            row.update({"ci_level": level, "extrapolation": pred["C"] / swept[1], "primary": method == primary})
            rows.append(row)
    columns = ["method", "C"] + [f"{q}{s}" for q in QUANTITIES for s in ("", "_lo", "_hi")] + [
        "ci_level", "extrapolation", "primary"]
    return pd.DataFrame(rows, columns=columns).sort_values(["method", "C"], kind="stable").reset_index(drop=True)


def exponent_rows(result: FitResult) -> list[dict]:
    """Per method: status, and each fitted quantity (a, b, E, alpha, beta) with its CI (None when absent)."""
    rows = []
    for method, entry in result.methods.items():
        ci = entry.ci or {}
        row = {"method": method, "label": registry.label(method), "status": str(entry.status),
               "reason": entry.reason or "", "n_points": entry.points_fitted, "n_valid": ci.get("n_valid"),
               "n_resamples": ci.get("n_resamples")}
        for q in ("a", "b", "E", "alpha", "beta"):
            value = entry.law(q)
            if q == "E" and value is None and "E" in (entry.loss_law or {}):
                value = entry.loss_law["E"]  # the floor of L_opt(C), not a surface's E: no CI was drawn for it
            row[q], row[f"{q}_ci"] = value, bounds(entry, q)
        rows.append(row)
    return rows


def comparison(frontier: pd.DataFrame) -> pd.DataFrame:
    """N_opt, D_opt and loss per target budget (rows) and method (columns): the methods side by side."""
    if frontier.empty:
        return pd.DataFrame()
    return frontier.pivot_table(index="C", columns="method", values=["N_opt", "D_opt", "loss"], sort=False)


def holdout_rows(result: FitResult) -> list[dict]:
    """Leave-largest-budget-out: per method, predicted vs observed best loss and N_opt at the held-out budget."""
    h = result.holdout or {}
    if h.get("status") != "ok":
        return []
    return [{"method": m, **e} for m, e in h["methods"].items()]


FORM_HEADER = ["form", "source", "parameters", "held-out RMS error", "note"]


def form_rows(result: FitResult) -> tuple[str, list[list[str]]]:
    """The law forms of the fit (fitting/forms.py) by held-out error: a caption and one row per form."""
    forms = result.forms or {}
    if not forms.get("forms"):
        return "", []
    rows = []
    for name, e in forms["forms"].items():
        h = e.get("holdout", {})
        scored = e["status"] == "ok" and "rel_error" in h
        note = (e.get("reason") or h.get("reason") or "") if not scored else (
            ("best" + (f", {forms['margin']:.3g}x less error than {forms['runner_up']}"
                       if "runner_up" in forms else ""))
            if name == forms.get("winner") else "")
        if scored and e.get("on_bound"):
            note = "; ".join(x for x in (note, "on a bound: " + ", ".join(e["on_bound"])) if x)
        rows.append([name, e["citation"], str(e["n_params"]), f"{h['rel_error']:.2%}" if scored else "-", note])
    base = f"; predicting no improvement: {forms['baseline_rel_error']:.2%}" if "baseline_rel_error" in forms else ""
    return f"Law forms by held-out error ({forms['held_out']} predicted at each run's N and D{base})", rows


def exclusions(result: FitResult) -> list[dict]:
    """Runs left out of some fit and why: every method's exclusions, merged by trial (with which methods)."""
    by_trial: dict[tuple[str, str], list[str]] = {}
    for method, entry in result.methods.items():
        for e in entry.excluded:
            by_trial.setdefault((e["trial_id"], e["reason"]), []).append(method)
    everyone = set(result.methods)
    return [{"trial_id": t, "reason": r, "methods": "all" if set(ms) == everyone else ", ".join(ms)}
            for (t, r), ms in by_trial.items()]


def entropy_floors(runs: pd.DataFrame | None) -> dict[str, float]:
    """The dataset's true entropy floor (nats per token) by dataset, where the runs report one."""
    if runs is None or "entropy_floor" not in runs.columns:
        return {}
    floor = pd.to_numeric(runs["entropy_floor"], errors="coerce")
    names = runs["dataset"].astype(str) if "dataset" in runs.columns else pd.Series("data", index=runs.index)
    out = {}
    for name, value in zip(names[floor.notna()], floor[floor.notna()]):
        out.setdefault(str(name), float(value))
    return out


def warnings(result: FitResult, *, swept: tuple[float, float], floors: dict[str, float]) -> list[str]:
    """What a sceptical reader should know before trusting the headline, most serious first."""
    out = [f"{m} was not fitted: {r.reason}" for m, r in result.methods.items() if not r.ok]
    par = result.method("parametric")
    if par is not None and par.ok:
        conv = par.convergence or {}
        grad = conv.get("grad_norm")
        # A gradient norm of 1e-9 is an optimum, whatever a tolerance relative to a tiny objective says: warn only
        # when the optimiser stopped with a gradient a reader would call nonzero.
        if not conv.get("converged", True) and (grad is None or not math.isfinite(grad) or grad > GRAD_WARN):
            out.append("the parametric fit stopped before its optimum" + (
                f" (gradient norm {grad:.2g})" if grad is not None and math.isfinite(grad) else ""))
        if conv.get("on_bound"):
            out.append(f"the parametric fit hit the bound of {', '.join(conv['on_bound'])}")
    check = result.floor_check or {}
    if check.get("status") == "ok" and check["verdict"] != "consistent":
        ci = check.get("E_ci")
        where = f" (interval {ci[0]:.4g} to {ci[1]:.4g})" if ci and None not in ci else ""
        if check["verdict"] == "below":
            out.append(f"parametric: fitted E={check['E']:.4g}{where} lies below the known floor {check['floor']:.4g}, "
                       "which no model can beat: E is not identified by these runs")
        else:
            out.append(f"parametric: fitted E={check['E']:.4g}{where} lies above the known floor "
                       f"{check['floor']:.4g}: the runs do not reach the regime the law extrapolates to (compare the "
                       "fit with E fixed at the floor)")
    elif not check:
        for floor_name, floor in floors.items():
            for m in free_surfaces():
                e = result.method(m)
                if e is not None and e.ok:
                    hi = (bounds(e, "E") or (e.E, e.E))[1]
                    if hi < floor * 0.99:
                        out.append(f"{m}: fitted E={e.E:.4g} (CI upper bound {hi:.4g}) lies below the entropy "
                                   f"floor {floor:.4g} of {floor_name}, which no model can beat: E is not identified "
                                   "by these runs")
    out += result.input_warnings
    vp = result.method("vpnls")
    disagree = ((vp.vs_parametric if vp is not None else None) or {}).get("disagree")
    if disagree:
        out.append(f"vpnls and parametric disagree on {', '.join(disagree)} (beyond 10% or 0.03 in a, b)")
    top = max(result.target_budgets, default=swept[1])
    if top > swept[1] * 10 ** FAR_DECADES:
        out.append(f"target budgets reach {sci(top)} FLOPs, {math.log10(top / swept[1]):.1f} decades beyond the "
                   f"largest swept budget ({sci(swept[1])}): the frontier there extrapolates the fitted power laws")
    for row in holdout_rows(result):
        if row["status"] != "ok":
            continue
        ratio = row["N_opt_ratio"]
        if abs(row["loss_rel_error"]) > HOLDOUT_LOSS_TOL or not 1 / HOLDOUT_RATIO_TOL <= ratio <= HOLDOUT_RATIO_TOL:
            out.append(f"leave-largest-budget-out: {row['method']} fitted without the largest budget misses it "
                       f"(best loss off by {row['loss_rel_error']:+.1%}, N_opt ratio {ratio:.2f})")
    for m, entry in result.ok_methods().items():
        ci = entry.ci or {}
        if ci.get("n_resamples") and ci["n_valid"] < 0.9 * ci["n_resamples"]:
            out.append(f"{m}: only {ci['n_valid']} of {ci['n_resamples']} bootstrap resamples could be fitted; "
                       "its intervals rest on those")
    for entry in result.methods.values():  # IsoFLOP's and the envelope's own warnings
        out += list(entry.warnings or ())
    if result.excluded:
        reasons = Counter(e["reason"].split(":")[0] for e in result.excluded)
        out.append(f"{len(result.excluded)} run(s) excluded from every fit ("
                   + ", ".join(f"{r}: {n}" for r, n in reasons.most_common()) + ")")
    return out


def cost_summary(runs: pd.DataFrame | None, *, cpus_per_trial: int = 1, gpus_per_trial: float = 0.0) -> dict | None:
    """The sweep's cost: FLOPs of finished runs, wall time, device hours, and failures by status.

    Device hours count each run's wall time times the devices it held: its GPUs on a CUDA device, else its
    CPU cores (so a CPU sweep reports core-hours). Wall time only covers each trial's recorded attempt.
    `failure_reasons` gives one example reason per failure kind when the table has a `reason` column.
    """
    if runs is None or len(runs) == 0 or "status" not in runs.columns:
        return None
    status = runs["status"].fillna("unknown").astype(str)
    finished = status == Status.FINISHED
    wall = _column(runs, "wall_s", 0.0).fillna(0.0)
    device = runs["device"].fillna("cpu").astype(str) if "device" in runs else pd.Series("cpu", index=runs.index)
    on_gpu = device.str.startswith("cuda")
    per_run = np.where(on_gpu, max(gpus_per_trial, 1.0), float(cpus_per_trial))
    flops, attempts = _column(runs, "C_exact", np.nan), _column(runs, "attempt", 1)
    return {"n_trials": len(runs), "n_finished": int(finished.sum()),
            "flops": float(flops[finished].sum()), "flops_all": float(flops.sum(skipna=True)),
            "wall_s": float(wall.sum()), "device_hours": float((wall * per_run).sum() / 3600),
            "gpu_hours": float((wall * per_run)[on_gpu].sum() / 3600),
            "cpu_core_hours": float((wall * per_run)[~on_gpu].sum() / 3600),
            "devices": dict(Counter(device)), "failures": dict(Counter(status[~finished]).most_common()),
            "failure_reasons": _first_reasons(runs, status=status, finished=finished),
            "retried": int((attempts > 1).sum())}


def _column(runs: pd.DataFrame, name: str, default: float) -> pd.Series:
    """A numeric column of the runs table, or `default` for every run when the table lacks it."""
    if name not in runs.columns:
        return pd.Series(default, index=runs.index, dtype=float)
    return pd.to_numeric(runs[name], errors="coerce")


def _first_reasons(runs: pd.DataFrame, *, status: pd.Series, finished: pd.Series) -> dict[str, str]:
    """One recorded reason per failure kind, where the runs table carries a `reason` column."""
    if "reason" not in runs.columns:
        return {}
    out: dict[str, str] = {}
    for kind, reason in zip(status[~finished], runs.loc[~finished, "reason"]):
        if isinstance(reason, str) and reason and kind not in out:
            out[kind] = reason
    return out
