"""The fitting stage's thin shell: load and validate runs, fit every method that can be fitted, write fit.json.

`run_fit` is what `python -m orchestrator action=fit` calls; `format_summary` is the printed table.

One compute definition runs through everything (fitting/compute.py): the tidy table's C, the IsoFLOP budgets,
every method's frontier, the hold-out and the report use the same C = k(N) N D. For a sweep the caller passes
its `ShapeRule` (the planner's shapes and exact accounting), so k(N) is the smoothed cost per token of the shapes
the sweep would train and each recommendation names its shape; for a CSV, k(N) is the runs' own C / (N D),
smoothed (6 under `fit.c_convention=6nd`).

Exit behaviour: bad input that stops everything (missing column, NaN values, all runs excluded, or no method
could fit these runs) raises `FitInputError` (exit 2, nothing written); methods that could not be fitted are
recorded as skipped with their reason while the others run, and the fit succeeds (exit 0) as long as one
method produced a result; when no method did and at least one failed in its maths, `FitError` (exit 1).
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from orchestrator.fitting import bootstrap as bs
from orchestrator.fitting import methods as registry
from orchestrator.fitting.checks import bound_words, headline_method, on_bound, run_checks, trustworthy
from orchestrator.fitting.command_line import CommandLine
from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.errors import FitError, FitInputError
from orchestrator.fitting.forms import compare_forms
from orchestrator.fitting.frontier import compare_fits
from orchestrator.fitting.holdout import leave_largest_budget_out
from orchestrator.fitting.lack_of_fit import lack_of_fit
from orchestrator.fitting.methods import FORM, FitContext
from orchestrator.fitting.options import EXTRAPOLATION_DECADES, FitConfig
from orchestrator.fitting.result import FitResult, MethodResult, MethodStatus, write_fit
from orchestrator.fitting.table import RunTable, file_sha256, read_runs_csv, tidy_runs

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MAX_FIT_N = 1e13  # the compute model is sampled no further than this many parameters


class ShapeRule(Protocol):
    """What the fit needs of a sweep's shape rule (implemented by the stage that knows the planner)."""

    description: str

    def samples(self, n_lo: float, n_hi: float) -> tuple[list[float], list[float]]:
        """(N, C_exact / (N D)) of the rule's shapes for sizes log-spaced over [n_lo, n_hi]."""

    def shape_of(self, N: float, C: float) -> dict:
        """The rule's shape for N and the tokens at which it costs C (frontier.ShapeOf)."""


@dataclass(frozen=True)
class FitReport:
    """What a fit produced: the typed result (fitting/result.py), where fit.json was written, the tidy runs table
    and options it was fitted with, and each method's point fit (the estimator's result, for the comparison)."""

    name: str
    fit: FitResult
    json_path: Path | None
    table: RunTable | None = None
    options: FitConfig | None = None
    compute: ComputeModel | None = None
    estimates: Mapping[str, object] = field(default_factory=dict)

    @cached_property
    def result(self) -> dict:
        """fit.json's content as a dict (NaN kept in memory), for readers of the file's layout (tests, MLflow)."""
        return self.fit.to_json()

    @property
    def skipped(self) -> dict[str, str]:
        return {m: r.reason for m, r in self.fit.methods.items() if not r.ok}

    @property
    def exit_code(self) -> int:
        """0: at least one method produced a result (run_fit raises otherwise)."""
        return 0


def safe_name(name: str, *, fallback: str = "runs") -> str:
    """A name usable as a report folder: letters, digits, '_', '.', '-', not starting with '.' (so a CSV called
    '...csv' cannot write its report into the working folder), at most 100 characters."""
    return name if SAFE_NAME.fullmatch(name) and not set(name) <= {"."} else fallback


def run_fit(options: FitConfig, *, table: pd.DataFrame | None = None, curves: pd.DataFrame | None = None,
            name: str | None = None, out_dir: str | None = None, shape_rule: ShapeRule | None = None,
            command: CommandLine | str | None = None) -> FitReport:
    """Fit `table` (sweep schema) or `options.runs_csv`; write <out_dir or options.out_dir/name>/fit.json.

    `command` is how the user reruns the sweep; the checks' fixes build on it (fitting/checks.py)."""
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
    swept = swept_budgets(runs)
    budgets = target_budgets(options, swept=swept)
    compute_for = _compute_source(options, shape_rule=shape_rule, budgets=budgets)
    ctx = FitContext(table=runs, options=options, compute=compute_for(runs.runs), compute_for=compute_for,
                     budgets=budgets, slope_budgets=slope_grid(swept),
                     resampler=make_resampler(runs.runs, options) if options.bootstrap else None,
                     shape_of=None if shape_rule is None or options.c_convention != "exact" else shape_rule.shape_of,
                     curves=curves, floor=known_floor(options, runs.runs))
    fitted = _fit_methods(ctx)
    on_profile = np.isfinite(runs.runs["budget"].to_numpy(float))
    result = FitResult(
        name=name, form=FORM, n_runs=len(runs.runs), excluded=tuple(_excluded(ctx)),
        conventions=dict(runs.conventions), compute=ctx.compute.to_json(),
        budgets={"grouping": runs.budget_grouping, "tol_dex": options.budget_tol_dex,
                 "values": sorted(set(runs.runs.loc[on_profile, "budget"].tolist())),
                 "runs_on_no_profile": int((~on_profile).sum())},
        target_budgets=tuple(ctx.budgets), slope_budgets=tuple(ctx.slope_budgets.tolist()), methods=fitted,
        floor=ctx.floor, noise=noise_summary(runs.runs), input_warnings=(*runs.warnings, *compute_warnings(ctx)),
        swept_range=(min(swept), max(swept)), checks=(), trustworthy=False, headline_method=None, provenance={},
        **_validation(ctx, fitted))
    primary = headline_method(result)
    if primary is not None:
        law = ctx.fits.get(primary)
        result = replace(result, lack_of_fit=lack_of_fit(
            runs.runs, law, method=primary, n_params=5 - (getattr(law, "fixed_E", None) is not None)))
    checks = run_checks(result, command=command)
    result = replace(result, checks=tuple(checks), trustworthy=trustworthy(checks),
                     headline_method=primary,
                     provenance={**source, "trial_ids": runs.trial_ids, "n_input_runs": runs.n_input,
                                 "conventions": runs.conventions, "options": asdict(options), "code": code_version(),
                                 "seed": options.seed, "seconds": round(time.perf_counter() - t0, 3)})
    folder = Path(out_dir) if out_dir is not None else Path(options.out_dir) / safe_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_fit(result, folder / "fit.json")
    return FitReport(name=name, fit=result, json_path=path, table=runs, options=options,
                     compute=ctx.compute, estimates=dict(ctx.fits))


def make_resampler(runs: pd.DataFrame, options: FitConfig) -> bs.Resampler:
    """fit.resampler: "stratified" (design points within budgets, fitting/bootstrap.py) or "plain": every run
    drawn with replacement, as Besiroglu et al. 2024 resampled the Epoch data (their published intervals)."""
    if options.resampler == "plain":
        return bs.Resampler.plain(len(runs), resamples=options.bootstrap, seed=options.seed)
    return bs.Resampler.of_runs(runs, resamples=options.bootstrap, seed=options.seed)


def swept_budgets(table: RunTable) -> list[float]:
    """The IsoFLOP budgets of the runs, else the range of their C."""
    b = table.runs["budget"].to_numpy(float)
    if np.isfinite(b).any():
        return sorted(set(b[np.isfinite(b)].tolist()))
    C = table.runs["C"].to_numpy(float)
    return sorted({float(C.min()), float(C.max())})


def target_budgets(options: FitConfig, *, swept: list[float]) -> list[float]:
    """The user's target budgets plus the largest swept; by default the swept budgets and 1 to
    EXTRAPOLATION_DECADES decades beyond the largest (a frontier is a guess further out)."""
    top = max(swept)
    if options.target_budgets:
        return sorted(set(options.target_budgets) | {top})
    inside = swept if len(swept) <= 12 else list(np.geomspace(min(swept), top, 7))
    return sorted(set(inside) | {top * 10.0 ** d for d in range(1, EXTRAPOLATION_DECADES + 1)})


def slope_grid(swept: list[float]) -> np.ndarray:
    """Budgets over which a frontier's local exponents a and b are measured: the swept range."""
    lo, hi = min(swept), max(swept)
    if hi / lo < 1.5:
        lo, hi = lo / 3, hi * 3
    return np.geomspace(lo, hi, 9)


def _compute_source(options: FitConfig, *, shape_rule: ShapeRule | None,
                    budgets: list[float]) -> Callable[[pd.DataFrame], ComputeModel]:
    """runs -> the fit's compute model (fitting/compute.py): 6, the sweep's shape rule, or the runs' own k."""
    if options.c_convention == "6nd":
        return lambda runs: ComputeModel.constant(6.0, source=f"C = 6 N D with N = N_{options.n_convention}")
    if shape_rule is not None:
        cache: dict[str, ComputeModel] = {}

        def from_rule(runs: pd.DataFrame) -> ComputeModel:
            if "model" not in cache:
                n_lo = float(runs["N"].min()) / 10
                n_hi = min(max(float(runs["N"].max()) * 10, math.sqrt(max(budgets) / 6.0) * 10), MAX_FIT_N)
                N, k = shape_rule.samples(n_lo, n_hi)
                cache["model"] = ComputeModel.smooth(N, k, convention="exact", source=shape_rule.description)
            return cache["model"]

        return from_rule
    return lambda runs: ComputeModel.smooth(
        runs["N"].to_numpy(float), (runs["C"] / (runs["N"] * runs["D"])).to_numpy(float), convention="exact",
        source="the runs' own C / (N D), smoothed in log N (held at its edge values beyond the runs' sizes)")


def known_floor(options: FitConfig, runs: pd.DataFrame) -> float | None:
    """fit.floor, else the runs' recorded entropy floor when they agree on one (within 1%)."""
    if options.floor is not None:
        return float(options.floor)
    if "entropy_floor" not in runs.columns:
        return None
    floors = pd.to_numeric(runs["entropy_floor"], errors="coerce").to_numpy(float)
    floors = floors[np.isfinite(floors) & (floors > 0)]
    if len(floors) == 0 or floors.max() > 1.01 * floors.min():
        return None
    return float(np.median(floors))


_excluded = registry.excluded


def _fit_methods(ctx: FitContext) -> dict[str, MethodResult]:
    """Every method of fit.methods (parametric_floor after parametric when a floor is known), each with its
    bootstrap; a method that cannot fit these runs is recorded as skipped (or failed) with its reason."""
    order = list(ctx.options.methods)
    if ctx.floor is not None and "parametric" in order:
        order.insert(order.index("parametric") + 1, "parametric_floor")
    out: dict[str, MethodResult] = {}
    for method in order:
        t = time.perf_counter()
        spec = registry.get(method)
        try:
            fit, entry = spec.fit(ctx)
            ctx.fits[method] = fit
            if ctx.resampler is not None:
                entry = replace(entry, ci=spec.bootstrap(ctx, fit))
        except (FitInputError, FitError) as err:
            bad_input = isinstance(err, FitInputError)
            entry = MethodResult(name=method, status=MethodStatus.SKIPPED if bad_input else MethodStatus.FAILED,
                                 reason=f"{method}: {err}", input_error=bad_input, excluded=tuple(_excluded(ctx)))
        out[method] = replace(entry, seconds=round(time.perf_counter() - t, 3))
    if not any(r.ok for r in out.values()):
        reasons = "; ".join(r.reason for r in out.values())
        if all(r.input_error for r in out.values()):
            raise FitInputError(f"no method could fit these {len(ctx.runs)} runs ({reasons}).")
        raise FitError(f"no method produced a fit ({reasons}).")
    if "parametric" in out and out["parametric"].ok and "vpnls" in out and out["vpnls"].ok:
        vp = out["vpnls"]
        out["vpnls"] = replace(vp, detail={**vp.detail, "vs_parametric": compare_fits(out["parametric"], vp)})
    return out


def _validation(ctx: FitContext, fitted: dict[str, MethodResult]) -> dict:
    """What checks the methods beyond their own fits: the floor check, the law forms, leave-largest-budget-out."""
    runs, options = ctx.runs, ctx.options
    out: dict = {}
    if ctx.floor is not None:
        out["floor_check"] = floor_check(fitted.get("parametric"), ctx.floor)
    if options.forms:
        out["forms"] = compare_forms(runs, compute_for=ctx.compute_for, forms=tuple(options.forms),
                                     delta=options.huber_delta, surface=ctx.fits.get("parametric"))
    if options.holdout:
        on_profile = np.isfinite(runs["budget"].to_numpy(float))
        try:
            iso = ctx.fits.get("isoflop")
            top = float(np.nanmax(runs["budget"])) if on_profile.any() else float("nan")
            out["holdout"] = {"status": "ok", **leave_largest_budget_out(
                runs, methods=[m for m in fitted if m in ctx.fits], compute_for=ctx.compute_for,
                delta=options.huber_delta, points=ctx.points, gamma=iso.gammas().get(top, 0.0) if iso else 0.0,
                fixed_E=ctx.floor)}
        except FitInputError as err:
            out["holdout"] = {"status": "skipped", "reason": str(err)}
    return out


def compute_warnings(ctx: FitContext) -> list[str]:
    """A compute model from a shape rule that does not describe the runs (fitted with other model settings than
    the sweep ran with) would move every frontier: say so."""
    dev = np.abs(ctx.compute.deviation(*(ctx.runs[c].to_numpy(float) for c in ("N", "C", "D"))))
    if ctx.compute.n_samples and np.median(dev) > 0.1:
        return [f"the compute model ({ctx.compute.source}) is {100 * np.expm1(np.median(dev)):.0f}% off the runs' own "
                "cost per token (median): were the runs planned with other model settings than the ones composed now?"]
    return []


def floor_check(parametric: MethodResult | None, floor: float) -> dict:
    """The free fit's E against the known floor: where its interval lies (Hoffmann et al. 2022's E is the
    entropy of natural text; on data whose entropy is known, the fitted E should cover it)."""
    if parametric is None or not parametric.ok:
        return {"status": "skipped", "reason": "the parametric fit did not run"}
    E = parametric.E
    ci = (parametric.ci or {}).get("E")
    out = {"status": "ok", "floor": floor, "E": E, "E_ci": ci, "rel_diff": E / floor - 1}
    if ci and None not in ci and all(map(math.isfinite, ci)):
        out["verdict"] = "below" if ci[1] < floor else "above" if ci[0] > floor else "consistent"
    else:
        out["verdict"] = "consistent" if abs(E / floor - 1) <= 0.05 else ("below" if E < floor else "above")
    return out


def noise_summary(runs: pd.DataFrame) -> dict:
    """The evaluation standard error (median over runs) beside the seed-to-seed standard deviation (pooled over
    design points with several seeds): two different noises, the second usually the larger."""
    out: dict = {"eval_loss_se_median": None, "seed_sd": None, "points_with_seeds": 0}
    if "eval_loss_se" in runs.columns:
        se = pd.to_numeric(runs["eval_loss_se"], errors="coerce").dropna()
        out["eval_loss_se_median"] = float(se.median()) if len(se) else None
    groups = runs.groupby("point")["loss"]
    counts, variances = groups.count(), groups.var(ddof=1)
    multi = counts >= 2
    if multi.any():
        dof = (counts[multi] - 1).to_numpy(float)
        out["seed_sd"] = float(np.sqrt(np.sum(variances[multi].to_numpy(float) * dof) / dof.sum()))
        out["points_with_seeds"] = int(multi.sum())
    return out


def code_version() -> dict:
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


def form_lines(forms: dict | None) -> list[str]:
    """The law forms (fitting/forms.py) side by side by held-out error, the winner and its margin."""
    if not forms:
        return []
    lines = ["", f"law forms by held-out error ({forms['held_out']} predicted at each run's N and D"
             + (f"; no improvement {forms['baseline_rel_error']:.2%})" if "baseline_rel_error" in forms else ")")]
    for name, e in forms["forms"].items():
        h = e.get("holdout", {})
        if e["status"] != "ok" or "rel_error" not in h:
            lines.append(f"  {name:<17}{e.get('reason') or h.get('reason')}")
            continue
        mark = ""
        if name == forms.get("winner"):
            mark = "  <- best" + (f", {forms['margin']:.3g}x less error than {forms['runner_up']}"
                                  if "runner_up" in forms else "")
        stuck = f"; on a bound: {', '.join(e['on_bound'])}" if e.get("on_bound") else ""
        lines.append(f"  {name:<17}RMS error {h['rel_error']:.2%}  ({e['citation']}; {e['n_params']} parameters"
                     f"{stuck}){mark}")
    return lines


def format_summary(report: FitReport) -> str:
    """The printed table: methods side by side with CIs, the frontier at target budgets, hold-out, warnings."""
    r = report.fit
    reasons = Counter(e["reason"].split(":")[0] for e in r.excluded)
    compute, conv = r.compute, r.conventions
    lines = [f"fit {report.name}: {r.n_runs} runs kept"
             + (f", {len(r.excluded)} excluded ({', '.join(f'{k} x{v}' for k, v in reasons.items())})"
                if r.excluded else ""),
             f"conventions: N={conv['n_convention']}, C={conv['c_convention']}, metric={conv['metric']}; "
             f"{len(r.budgets['values'])} IsoFLOP budgets ({r.budgets['grouping']})",
             f"compute: C = k(N) N D, k from {r.compute_source or '?'}"
             + (f" (k = {compute['k']:.3g})" if compute.get("constant") else
                f" (k from {compute['k_range'][0]:.3g} to {compute['k_range'][1]:.3g})" if compute.get("k_range")
                else ""),
             ""]
    level = None
    header = f"{'method':<17}{'status':<9}" + "".join(f"{q:<25}" for q in ("alpha", "beta", "E", "a", "b"))
    lines.append(header)
    for m, e in r.methods.items():
        if not e.ok:
            lines.append(f"{m:<17}{e.status:<9}{e.reason}")
            continue
        level = e.level or level
        cells = []
        for q in ("alpha", "beta", "E", "a", "b"):
            v, ci = e.law(q), e.interval(q)
            cell = "-" if v is None else f"{v:.4g}"
            if v is not None and ci is not None:
                cell += f" [{ci[0]:.3g}, {ci[1]:.3g}]"
            cells.append(f"{cell:<25}")
        lines.append(f"{m:<17}{'ok':<9}" + "".join(cells))
    for m in registry.frontier_methods():
        e = r.method(m)
        if e is not None and e.ok:
            lines += ["", f"compute-optimal frontier ({m}" + (f"; {level:.0%} CI)" if e.ci is not None else ")"),
                      f"{'C':<10}{'N_opt':<30}{'D_opt':<30}{'D/N':<24}{'loss':<8}"]
            for c, p in e.predictions.items():
                def cell(q: str, *, p: dict = p, c: str = c, e: MethodResult = e) -> str:
                    ci = e.interval(q, budget=c)
                    return f"{p[q]:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci is not None else "")
                lines.append(f"{c:<10}{cell('N_opt'):<30}{cell('D_opt'):<30}{cell('tokens_per_param'):<24}"
                             f"{cell('loss')}")
            break
    h = r.holdout or {}
    if h.get("status") == "ok":
        o = h["observed"]
        lines += ["", f"leave-largest-budget-out (C={h['budget']:.3g}: "
                      + (f"minimum {o['best_loss']:.4g} at N_opt {o['N_opt']:.3g} from the parabola vertex"
                         if o.get("bracketed") else f"minimum not bracketed, each of {o['n_runs']} runs scored at its "
                         f"N and D; best run {o['best_loss']:.4g} at N {o['N_opt']:.3g}") + ")"]
        for m, e in h["methods"].items():
            if e["status"] != "ok":
                lines.append(f"  {m:<17}{e['reason']}")
            elif e.get("kind") == "minimum":
                lines.append(f"  {m:<17}L_opt error {e['loss_rel_error']:+.2%} (no improvement "
                             f"{e['baseline_rel_error']:.2%}), N_opt ratio {e['N_opt_ratio']:.3g}")
            else:
                lines.append(f"  {m:<17}RMS error over the runs {abs(e['loss_rel_error']):.2%} (no improvement "
                             f"{e['baseline_rel_error']:.2%})")
    elif h:
        lines += ["", f"leave-largest-budget-out skipped: {h['reason']}"]
    lines += form_lines(r.forms)
    fc = r.floor_check
    if fc and fc.get("status") == "ok":
        lines += ["", f"known floor {fc['floor']:.4g}: fitted E {fc['E']:.4g} is {fc['verdict']}"
                      + (" (interval [" + ", ".join(f"{v:.4g}" for v in fc["E_ci"]) + "])" if fc.get("E_ci") else "")]
    if r.checks:
        marks = {"pass": "ok  ", "fail": "FAIL", "skipped": "n/a ", "warn": "warn"}
        lines += ["", "checks (" + ("the frontier can be trusted" if r.trustworthy else
                                    "NOT YET TRUSTWORTHY: see the failed checks") + ")"]
        for c in r.checks:
            lines.append(f"  [{marks[c.status]}] {c.title}: {c.detail}")
            if c.status in ("fail", "warn") and c.fix:
                lines.append(f"         fix: {c.fix}")
    warns = list(r.input_warnings) + [w for e in r.methods.values() for w in (e.warnings or ())]
    for m, e in r.methods.items():
        stuck = on_bound(r, m) if e.ok else []
        if stuck:
            warns.append(bound_words(r, m, stuck) + ": the quantities that depend on it are conditional on it")
        for q in ("a", "b"):
            ci = e.interval(q) if e.ok else None
            if ci and (ci[0] < 0 or ci[1] > 1):
                warns.append(f"{m}: the interval of {q} [{ci[0]:.3g}, {ci[1]:.3g}] leaves [0, 1], the range {q} can "
                             "take: resamples end in degenerate fits, so it is not an interval of the allocation")
    vp = r.method("vpnls")
    vs = ((vp.vs_parametric if vp is not None else None) or {}).get("disagree")
    if vs:
        warns = warns + [f"vpnls and parametric disagree on {', '.join(vs)}"]
    if warns:
        lines += ["", "warnings:"] + [f"  - {w}" for w in warns]
    if report.json_path is not None:
        lines += ["", f"written: {report.json_path}"]
    return "\n".join(lines)
