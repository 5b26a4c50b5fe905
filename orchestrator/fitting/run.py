"""The fitting stage's thin shell: load and validate runs, fit every method that can be fitted, write fit.json.

`run_fit` is what `python -m orchestrator action=fit` calls; `format_summary` is the printed table. Bad input
that stops everything (missing column, NaN values, all runs excluded) raises `FitInputError` (a ValueError:
exit code 2); a method that cannot be fitted from this input is recorded as skipped with its reason, the
others still run, and `FitReport.exit_code` is 2.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.fitting import bootstrap as bs
from orchestrator.fitting.envelope import fit_envelope, valid_curve_points
from orchestrator.fitting.errors import FitError, FitInputError
from orchestrator.fitting.frontier import compare_fits, leave_largest_budget_out, predictions
from orchestrator.fitting.isoflop import fit_isoflop
from orchestrator.fitting.options import FitConfig
from orchestrator.fitting.powerlaw import SaturatingPowerLaw, fit_single_variable, slice_at_largest
from orchestrator.fitting.surface import fit_surface
from orchestrator.fitting.table import RunTable, file_sha256, largest_budget, read_runs_csv, tidy_runs
from orchestrator.fitting.vpnls import fit_vpnls

FORM = "L(N, D) = E + A / N^alpha + B / D^beta"


@dataclass(frozen=True)
class FitReport:
    """What a fit produced: the fit.json content, where it was written, and the exit code for the CLI."""

    name: str
    result: dict
    json_path: Path | None

    @property
    def methods(self) -> dict[str, dict]:
        """Each fitted method's entry, in the order they ran."""
        return {m: self.result[m] for m in self.result["method_order"]}

    @property
    def skipped(self) -> dict[str, str]:
        return {m: e["reason"] for m, e in self.methods.items() if e["status"] != "ok"}

    @property
    def exit_code(self) -> int:
        """2 when a method was skipped because of the input (too few runs or budgets), else 0."""
        return 2 if any(e.get("input_error") for e in self.methods.values()) else 0


def run_fit(options: FitConfig, *, table: pd.DataFrame | None = None, curves: pd.DataFrame | None = None,
            name: str | None = None, out_dir: str | None = None) -> FitReport:
    """Fit `table` (sweep schema) or `options.runs_csv`; write <out_dir or options.out_dir/name>/fit.json."""
    t0 = time.perf_counter()
    source: dict = {}
    if table is None:
        if options.runs_csv is None:
            raise FitInputError("nothing to fit: give fit.runs_csv=PATH or a sweep whose runs have finished.")
        table = read_runs_csv(options.runs_csv, columns=options.columns)
        source = {"runs_csv": str(options.runs_csv), "sha256": file_sha256(options.runs_csv)}
        name = name or Path(options.runs_csv).stem
    if name is None:
        sweeps = table["sweep"].dropna().unique() if "sweep" in table.columns else []
        name = str(sweeps[0]) if len(sweeps) == 1 else "runs"
    runs = tidy_runs(table, options=options)
    if curves is None and options.curves_csv is not None:
        if not Path(options.curves_csv).is_file():
            raise FitInputError(f"fit.curves_csv={options.curves_csv!r} is not a readable file.")
        curves = pd.read_csv(options.curves_csv)
        source["curves_sha256"] = file_sha256(options.curves_csv)
    budgets = sorted(set(options.target_budgets) | {largest_budget(runs)})
    result = {"name": name, **_fit_methods(runs, curves=curves, options=options, budgets=budgets)}
    result["provenance"] = {**source, "trial_ids": runs.trial_ids, "n_input_runs": runs.n_input,
                            "conventions": runs.conventions, "options": asdict(options), "code": _code_version(),
                            "seed": options.seed, "seconds": round(time.perf_counter() - t0, 3)}
    folder = Path(out_dir) if out_dir is not None else Path(options.out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fit.json"
    path.write_text(json.dumps(_jsonable(result), indent=2, allow_nan=False) + "\n")
    return FitReport(name=name, result=result, json_path=path)


def _fit_methods(table: RunTable, *, curves: pd.DataFrame | None, options: FitConfig, budgets: list[float]) -> dict:
    runs, k = table.runs, table.flops_per_nd
    N, D, L = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    excluded = [{"trial_id": e.trial_id, "reason": e.reason} for e in table.excluded]
    n_boot = options.bootstrap
    weights = bs.resample_weights(len(runs), resamples=n_boot, seed=options.seed) if n_boot else None
    on_profile = np.isfinite(runs["budget"].to_numpy(float))
    out: dict = {"form": FORM, "n_runs": len(runs), "excluded": excluded,
                 "conventions": {**table.conventions, "flops_per_nd": k},
                 "budgets": {"grouping": table.budget_grouping, "tol_dex": options.budget_tol_dex,
                             "values": sorted(set(runs.loc[on_profile, "budget"].tolist())),
                             "runs_on_no_profile": int((~on_profile).sum())},
                 "target_budgets": budgets, "method_order": list(options.methods)}
    fits: dict = {}
    points = None

    def fit_parametric() -> dict:
        fit = fits["parametric"] = fit_surface(N, D, L, delta=options.huber_delta)
        entry = _surface_entry(fit, budgets=budgets, k=k)
        entry["objective"] = fit.objective
        entry["huber_delta"] = fit.huber_delta
        entry["convergence"] = {"grad_norm": fit.grad_norm, "newton_iterations": fit.newton_iterations,
                                "polish_iterations": fit.polish_iterations, "on_bound": list(fit.on_bound),
                                "converged": fit.converged, "n_starts": fit.n_starts,
                                "n_finalists": fit.n_finalists, "n_at_best": fit.n_at_best, "seconds": fit.seconds}
        if weights is not None:
            entry["ci"] = bs.bootstrap_parametric(runs, fit, weights=weights, budgets=budgets, flops_per_nd=k,
                                                  level=options.ci).to_json()
        return entry

    def fit_vp() -> dict:
        fit = fits["vpnls"] = fit_vpnls(N, D, L)
        entry = _surface_entry(fit, budgets=budgets, k=k)
        entry["rss"] = fit.rss
        entry["convergence"] = {"grad_norm": fit.grad_norm, "iterations": fit.iterations,
                                "on_bound": list(fit.on_bound), "converged": fit.converged,
                                "grid_points": fit.grid_points, "seconds": fit.seconds}
        if weights is not None:
            entry["ci"] = bs.bootstrap_vp(runs, fit, weights=weights, budgets=budgets, flops_per_nd=k,
                                          level=options.ci).to_json()
        return entry

    def fit_iso() -> dict:
        fit = fits["isoflop"] = fit_isoflop(N, D, L, budget=runs["budget"].to_numpy(float))
        entry = _law_entry(fit, budgets=budgets, k=k)
        entry["profiles"] = [asdict(p) for p in fit.profiles]
        entry["skipped_budgets"] = [{"budget": c, "reason": r} for c, r in fit.skipped]
        entry["warnings"] = fit.warnings
        entry["excluded"] = excluded + [{"trial_id": t, "reason": "not on an IsoFLOP profile"}
                                        for t in runs.loc[~on_profile, "trial_id"]]
        if weights is not None:
            entry["ci"] = bs.bootstrap_isoflop(runs, fit, weights=weights, budgets=budgets,
                                               level=options.ci).to_json()
        return entry

    def fit_env() -> dict:
        nonlocal points
        if curves is not None:
            points, source = valid_curve_points(curves, runs=runs, metric=options.metric,
                                                c_convention=options.c_convention), "valid points of training curves"
        else:
            points, source = runs[["trial_id", "N", "D", "C", "loss"]], "final point of each run"
        fit = fits["envelope"] = fit_envelope(points, source=source)
        entry = _law_entry(fit, budgets=budgets, k=k)
        entry["source"], entry["n_valid_points"] = fit.source, fit.n_valid_points
        entry["points"] = {"C": fit.C, "N": fit.N, "D": fit.D, "loss": fit.L}
        if weights is not None:
            entry["ci"] = bs.bootstrap_envelope(points, fit, resamples=n_boot, seed=options.seed, budgets=budgets,
                                                level=options.ci).to_json()
        return entry

    def fit_pl() -> dict:
        fit = fit_single_variable(N, D, L, tol_dex=options.budget_tol_dex)
        entry = {"status": "ok", "form": "L(N) = k_N N^-alpha at the largest D; L(D) = k_D D^-beta at the largest N",
                 "alpha": fit.alpha, "beta": fit.beta, "a": fit.a, "b": fit.b, "at_D": fit.at_D, "at_N": fit.at_N,
                 "k_N": fit.loss_vs_N.k, "k_D": fit.loss_vs_D.k, "n_N": fit.loss_vs_N.n, "n_D": fit.loss_vs_D.n,
                 "convergence": {"method": "closed-form log-log least squares", "r2_N": fit.loss_vs_N.r2,
                                 "r2_D": fit.loss_vs_D.r2},
                 "note": "a and b assume the additive form with negligible E; no frontier predictions",
                 "predictions": {}, "excluded": excluded}
        if weights is not None:
            iN, _ = slice_at_largest(D, N, tol_dex=options.budget_tol_dex, what="L(N)")
            iD, _ = slice_at_largest(N, D, tol_dex=options.budget_tol_dex, what="L(D)")
            entry["ci"] = bs.bootstrap_single_variable(N, D, L, slice_N=iN, slice_D=iD, weights=weights,
                                                       level=options.ci).to_json()
        return entry

    steps = {"parametric": fit_parametric, "vpnls": fit_vp, "isoflop": fit_iso, "envelope": fit_env,
             "powerlaw": fit_pl}
    for method in options.methods:
        t = time.perf_counter()
        try:
            entry = steps[method]()
            entry.setdefault("excluded", excluded)
        except FitInputError as err:
            entry = {"status": "skipped", "reason": f"{method}: {err}", "input_error": True, "excluded": excluded}
        except FitError as err:
            entry = {"status": "failed", "reason": f"{method}: {err}", "input_error": False, "excluded": excluded}
        entry["seconds"] = round(time.perf_counter() - t, 3)
        out[method] = entry
    if "parametric" in fits and "vpnls" in fits:
        out["vpnls"]["vs_parametric"] = compare_fits(out["parametric"], out["vpnls"])
    if options.holdout:
        try:
            out["holdout"] = {"status": "ok", **leave_largest_budget_out(
                runs, methods=[m for m in options.methods if m in fits], flops_per_nd=k, delta=options.huber_delta,
                points=points)}
        except FitInputError as err:
            out["holdout"] = {"status": "skipped", "reason": str(err)}
    return out


def _surface_entry(fit, *, budgets: list[float], k: float) -> dict:
    return {"status": "ok", "form": FORM, "E": fit.E, "A": fit.A, "B": fit.B, "alpha": fit.alpha, "beta": fit.beta,
            "a": fit.a, "b": fit.b, "G": fit.G, "n_points": fit.n_points,
            "predictions": predictions(fit, budgets, flops_per_nd=k)}


def _law_entry(fit, *, budgets: list[float], k: float) -> dict:
    law = fit.loss_law
    loss = ({"form": "L_opt = E + k (C / C_ref)^p", "E": law.E, "k": law.k, "p": law.p, "C_ref": law.x_ref}
            if isinstance(law, SaturatingPowerLaw) else {"form": "L_opt = k C^p", "k": law.k, "p": law.p})
    return {"status": "ok", "form": "N_opt = k_N C^a, D_opt = k_D C^b", "a": fit.a, "b": fit.b,
            "k_N": fit.n_law.k, "k_D": fit.d_law.k, "loss_law": loss,
            "convergence": {"method": "closed-form log-log least squares", "r2_N": fit.n_law.r2,
                            "r2_D": fit.d_law.r2, "n_points": fit.n_law.n},
            "predictions": predictions(fit, budgets, flops_per_nd=k)}


def _code_version() -> dict:
    try:
        version = metadata.version("scaling-orchestrator")
    except metadata.PackageNotFoundError:
        version = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"package": version, "git_commit": commit}


def _jsonable(obj: object) -> object:
    """Plain JSON types; NaN and inf become null so the file is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def format_summary(report: FitReport) -> str:
    """The printed table: methods side by side with CIs, the frontier at target budgets, hold-out, warnings."""
    r = report.result
    reasons = Counter(e["reason"].split(":")[0] for e in r["excluded"])
    lines = [f"fit {report.name}: {r['n_runs']} runs kept"
             + (f", {len(r['excluded'])} excluded ({', '.join(f'{k} x{v}' for k, v in reasons.items())})"
                if r["excluded"] else ""),
             f"conventions: N={r['conventions']['n_convention']}, C={r['conventions']['c_convention']}, "
             f"metric={r['conventions']['metric']}; {len(r['budgets']['values'])} IsoFLOP budgets "
             f"({r['budgets']['grouping']})", ""]
    level = None
    header = f"{'method':<11}{'status':<9}" + "".join(f"{q:<25}" for q in ("alpha", "beta", "E", "a", "b"))
    lines.append(header)
    for m, e in report.methods.items():
        if e["status"] != "ok":
            lines.append(f"{m:<11}{e['status']:<9}{e['reason']}")
            continue
        ci = e.get("ci", {})
        level = ci.get("level", level)
        cells = []
        for q in ("alpha", "beta", "E", "a", "b"):
            v = e.get(q)
            cell = "-" if v is None else f"{v:.4g}"
            if v is not None and ci.get(q) and None not in ci[q] and all(map(math.isfinite, ci[q])):
                cell += f" [{ci[q][0]:.3g}, {ci[q][1]:.3g}]"
            cells.append(f"{cell:<25}")
        lines.append(f"{m:<11}{'ok':<9}" + "".join(cells))
    for m in ("parametric", "isoflop", "vpnls", "envelope"):
        e = report.methods.get(m)
        if e and e["status"] == "ok":
            lines += ["", f"compute-optimal frontier ({m}" + (f"; {level:.0%} CI)" if "ci" in e else ")"),
                      f"{'C':<10}{'N_opt':<30}{'D_opt':<30}{'D/N':<10}{'loss':<8}"]
            for c, p in e["predictions"].items():
                ci = e.get("ci", {}).get("predictions", {}).get(c, {})
                fmt = lambda q: f"{p[q]:.3g}" + (f" [{ci[q][0]:.3g}, {ci[q][1]:.3g}]" if ci.get(q) and None not in ci[q] else "")
                lines.append(f"{c:<10}{fmt('N_opt'):<30}{fmt('D_opt'):<30}{p['tokens_per_param']:<10.3g}"
                             f"{p['loss']:.4g}")
            break
    h = r.get("holdout", {})
    if h.get("status") == "ok":
        o = h["observed"]
        lines += ["", f"leave-largest-budget-out (C={h['budget']:.3g}: best loss {o['best_loss']:.4g}, "
                      f"N_opt {o['N_opt']:.3g} from {o['N_opt_source']})"]
        for m, e in h["methods"].items():
            lines.append(f"  {m:<11}" + (f"loss error {e['loss_rel_error']:+.2%}, N_opt ratio {e['N_opt_ratio']:.3g}"
                                        if e["status"] == "ok" else e["reason"]))
    elif h:
        lines += ["", f"leave-largest-budget-out skipped: {h['reason']}"]
    warns = report.methods.get("isoflop", {}).get("warnings", [])
    vs = report.methods.get("vpnls", {}).get("vs_parametric", {}).get("disagree")
    if vs:
        warns = warns + [f"vpnls and parametric disagree on {', '.join(vs)}"]
    if warns:
        lines += ["", "warnings:"] + [f"  - {w}" for w in warns]
    if report.json_path is not None:
        lines += ["", f"written: {report.json_path}"]
    return "\n".join(lines)
