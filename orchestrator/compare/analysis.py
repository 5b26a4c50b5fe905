"""The comparison itself, from fitted sweeps to the content of compare.json: pure, no I/O.

For each variant against the baseline and each budget C of its table (the budgets either sweep swept, and the
target budgets): L_opt of both, M(C) with its bootstrap interval, the compute the baseline needs, which sweep the
interval favours, where the numbers leave the data; matched-N and matched-D multipliers where both fits are
surfaces (compare/multiplier.py). Then the trend of M over the measured budgets, the budgets where the curves
cross, and the warnings: crossing, not significant, extrapolated, M depending on C, a frontier that failed its
own checks. With `joint_E`, the same from the joint fit with one shared E (compare/joint.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from orchestrator.compare import bootstrap as bs
from orchestrator.compare.fits import SweepFit
from orchestrator.compare.frontier import LossFrontier
from orchestrator.compare.joint import fit_joint, joint_resamples
from orchestrator.compare.multiplier import (AHEAD, BEHIND, TREND_TOL, UNCLEAR, crossings, multipliers, notes,
                                             outside, trend, verdict)
from orchestrator.report.text import sci
from orchestrator.fitting.errors import FitInputError

CURVE_POINTS = 16  # budgets on which M(C) and its band are drawn
OVERLAP_TOL = 1.01  # budgets within 1% count as the same
FAR = 2.0  # a measured budget whose baseline compute lies further than this outside its sweep is warned about
CAUSE_SHARE = 0.5  # a part of the law whose swap leaves at most this share of M's trend is named as its cause


@dataclass(frozen=True)
class Options:
    """How the comparison is computed (compare/options.CompareConfig minus the names)."""

    targets: tuple[float, ...] = ()
    resamples: int = 1000
    level: float = 0.90
    seed: int = 0
    joint_E: bool = False


@dataclass(frozen=True)
class Resampled:
    """A sweep's frontier on each resample and which resamples could be fitted."""

    frontier: LossFrontier
    valid: np.ndarray


def check_overlap(*, baseline: str, base_swept: tuple[float, float], variant: str,
                  var_swept: tuple[float, float]) -> None:
    """A variant whose swept budgets do not overlap the baseline's would compare two extrapolations: one sentence."""
    (lo_b, hi_b), (lo_v, hi_v) = base_swept, var_swept
    if max(lo_b, lo_v) > min(hi_b, hi_v) * OVERLAP_TOL:
        raise FitInputError(f"compare.variants: {variant} swept budgets {lo_v:.3g} to {hi_v:.3g} FLOPs, which do not "
                            f"overlap the baseline {baseline}'s {lo_b:.3g} to {hi_b:.3g}; M(C) would compare two "
                            "extrapolations, so sweep at least one budget range in common.")


def table_budgets(baseline: SweepFit, variant: SweepFit, targets: tuple[float, ...]) -> list[float]:
    """Both sweeps' swept budgets and the targets (default: one and two decades beyond the largest shared budget),
    budgets within 1% of each other counted once."""
    shared_top = min(baseline.swept[1], variant.swept[1])
    wanted = sorted([*baseline.budgets, *variant.budgets, *(targets or (shared_top * 10, shared_top * 100))])
    out: list[float] = []
    for C in wanted:
        if not out or C > out[-1] * OVERLAP_TOL:
            out.append(float(C))
    return out


def analyse(baseline: SweepFit, variants: list[SweepFit], *, options: Options) -> dict:
    """compare.json's comparisons (see the module docstring); FitInputError when a variant shares no budgets."""
    for v in variants:
        check_overlap(baseline=baseline.name, base_swept=baseline.swept, variant=v.name, var_swept=v.swept)
    sweeps = [baseline, *variants]
    boots = None
    resamplers = [bs.resampler_for(s, resamples=options.resamples, seed=options.seed + i)
                  for i, s in enumerate(sweeps)] if options.resamples else None
    if resamplers:
        boots = [Resampled(*bs.frontier_resamples(s, resampler=r)) for s, r in zip(sweeps, resamplers)]
    out: dict = {"method": baseline.method, "level": options.level,
                 "bootstrap": ({"resamples": options.resamples, "seeds": [options.seed + i for i in range(len(sweeps))],
                                "scheme": "each sweep resampled independently: " + resamplers[0].scheme,
                                "valid": {s.name: int(b.valid.sum()) for s, b in zip(sweeps, boots)}}
                               if boots else None),
                 "comparisons": [pair(baseline, v, fronts=(baseline.frontier, v.frontier),
                                      boots=(boots[0], boots[i + 1]) if boots else None, options=options)
                                 for i, v in enumerate(variants)]}
    if options.joint_E:
        joint = fit_joint(sweeps)
        jboots = None
        if resamplers:
            fronts, ok = joint_resamples(sweeps, joint, resamplers=resamplers)
            jboots = [Resampled(f, ok & f.valid()) for f in fronts]
        out["joint"] = {"E": joint.E, "objective": joint.objective, "converged": joint.converged,
                        "laws": {s.name: _law(f) for s, f in zip(sweeps, joint.frontiers)},
                        "comparisons": [pair(baseline, v, fronts=(joint.frontiers[0], joint.frontiers[i + 1]),
                                             boots=(jboots[0], jboots[i + 1]) if jboots else None, options=options)
                                        for i, v in enumerate(variants)]}
    return out


def pair(baseline: SweepFit, variant: SweepFit, *, fronts: tuple[LossFrontier, LossFrontier],
         boots: tuple[Resampled, Resampled] | None, options: Options) -> dict:
    """One variant against the baseline: the table, trend, crossings, curve and warnings."""
    budgets = table_budgets(baseline, variant, options.targets)
    x = np.log(budgets)
    lo_c, hi_c = min(budgets), max(budgets)
    grid = np.unique(np.r_[np.linspace(np.log(lo_c), np.log(hi_c), CURVE_POINTS), x])
    point = multipliers(fronts[0], fronts[1], grid)
    at = np.searchsorted(grid, x)
    ci: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    slopes = None
    measured = _measured(budgets, baseline, variant)
    valid = None
    if boots is not None:
        samples = multipliers(boots[0].frontier, boots[1].frontier, grid)
        valid = boots[0].valid & boots[1].valid
        for key in ("log_M", "log_M_N", "log_M_D"):
            if key in samples:
                ci[key] = bs.percentile_interval(samples[key], valid, level=options.level)
        if measured.sum() >= 2:
            slopes = trend(x[measured], samples["log_M"][:, at][:, measured])[valid]
    rows = []
    for j, C in enumerate(budgets):
        g = at[j]
        M = float(np.exp(point["log_M"][0, g]))
        lo, hi = (float(ci["log_M"][0][g]), float(ci["log_M"][1][g])) if "log_M" in ci else (np.nan, np.nan)
        row = {"C": C, "measured": bool(measured[j]), "L_base": float(point["L_base"][0, g]),
               "L_variant": float(point["L_variant"][0, g]), "M": M, "M_ci": [lo, hi], "C_base": M * C,
               "verdict": verdict(lo, hi) if "log_M" in ci else None,
               "baseline_outside": outside(M * C, baseline.swept),
               "notes": notes(C=C, M=M, variant_swept=variant.swept, base_swept=baseline.swept,
                              below_floor=bool(point["L_variant"][0, g] <= fronts[0].E[0]))}
        for key, name, alloc in (("log_M_N", "M_N", "N_variant"), ("log_M_D", "M_D", "D_variant")):
            if key in point:
                row[name] = float(np.exp(point[key][0, g]))
                row[f"{name}_ci"] = [float(ci[key][0][g]), float(ci[key][1][g])] if key in ci else [np.nan, np.nan]
                row[alloc] = float(point[alloc][0, g])
        if "log_M_N" in point:
            row["matched_notes"] = _matched_notes(row, baseline, point, g)
        rows.append(row)
    point_slope = float(trend(x[measured], point["log_M"][:, at][:, measured])[0]) if measured.sum() >= 2 else np.nan
    trend_out = {"slope": point_slope, "per_decade": float(10 ** point_slope) if np.isfinite(point_slope) else None,
                 "ci": (list(np.nanpercentile(slopes, (50 * (1 - options.level), 50 * (1 + options.level))))
                        if slopes is not None and np.isfinite(slopes).sum() >= 2 else [np.nan, np.nan]),
                 "budgets": [C for C, m in zip(budgets, measured) if m]}
    lo_m, hi_m = _measured_range(baseline, variant)
    point_cross = crossings(grid, point["log_M"][0])
    if "log_M" in ci:
        # "The curves cross" is a claim about the whole curve, scanned over every budget of the grid: it is held to a
        # simultaneous band (Bonferroni over the grid's budgets), not to the pointwise intervals of the table, where
        # one of many intervals missing the truth would report a crossing that is noise.
        band = bs.percentile_interval(samples["log_M"], valid, level=1 - (1 - options.level) / len(grid))
        found = significant_crossings(grid, point["log_M"][0], *band)
    else:
        found = point_cross
    crossing = [{"C": c, "measured": bool(lo_m <= c <= hi_m), "from_interval": "log_M" in ci} for c in found]
    out = {"baseline": baseline.name, "variant": variant.name, "rows": rows, "trend": trend_out,
           "crossings": crossing, "point_crossings": point_cross,
           "trend_cause": trend_cause(fronts, x[measured]) if measured.sum() >= 2 else None,
           "n_valid": int(valid.sum()) if valid is not None else 0,
           "n_resamples": len(valid) if valid is not None else 0,
           "curve": {"C": np.exp(grid).tolist(), "M": np.exp(point["log_M"][0]).tolist(),
                     "M_lo": ci["log_M"][0].tolist() if "log_M" in ci else [],
                     "M_hi": ci["log_M"][1].tolist() if "log_M" in ci else [],
                     "L_base": point["L_base"][0].tolist(), "L_variant": point["L_variant"][0].tolist()},
           "laws": {"baseline": _law(fronts[0]), "variant": _law(fronts[1])}}
    out["warnings"] = warnings_for(out, baseline=baseline.name, variant=variant.name, level=options.level)
    return out


def significant_crossings(x: np.ndarray, log_M: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[float]:
    """Budgets where M crosses 1 with the band's support: between two grid budgets where the band (lo, hi) of M
    lies wholly above 1 at one and wholly below at the other (intervals containing 1 in between are skipped); the
    crossing is placed where the point estimate crosses between them, else halfway in ln C. A point estimate that
    wobbles around 1 inside its interval (a constant multiplier near 1, or noise) is no crossing."""
    sign = np.where(lo > 1, 1, np.where(hi < 1, -1, 0))  # lo, hi: the interval of M itself
    idx = np.flatnonzero(sign)
    out = []
    for i, j in zip(idx[:-1], idx[1:]):
        if sign[i] != sign[j]:
            between = crossings(x[i:j + 1], log_M[i:j + 1])
            out.append(between[0] if between else float(np.exp((x[i] + x[j]) / 2)))
    return out


def trend_cause(fronts: tuple[LossFrontier, LossFrontier], x: np.ndarray) -> list[str]:
    """Why M depends on the budget: the variant's law with the baseline's exponents (alpha, beta; or the loss law's
    p), then with the baseline's E, each put in its place; a part whose swap makes M constant over the measured
    budgets x (removes at least 1 - CAUSE_SHARE of its trend) is a cause. Both named when neither alone does."""
    base, var = fronts
    if base.is_surface and var.is_surface:
        names: tuple[str, ...] = ("alpha", "beta")
    else:
        names = ("p",) if not (base.is_surface or var.is_surface) else ()
    full = abs(trend(x, multipliers(base, var, x)["log_M"])[0])
    causes = []
    for cause, fields in (("exponents", names), ("E", ("E",))):
        if not fields:
            continue
        swapped = replace(var, **{f: getattr(base, f) for f in fields})
        slope = abs(trend(x, multipliers(base, swapped, x)["log_M"])[0])
        if np.isfinite(slope) and slope <= CAUSE_SHARE * full:
            causes.append(cause)
    return causes or ["exponents", "E"]


def _measured_range(baseline: SweepFit, variant: SweepFit) -> tuple[float, float]:
    """The budgets both sweeps swept (within 1%): where M is a measurement, not an extrapolation."""
    return (max(baseline.swept[0], variant.swept[0]) / OVERLAP_TOL,
            min(baseline.swept[1], variant.swept[1]) * OVERLAP_TOL)


def _measured(budgets: list[float], baseline: SweepFit, variant: SweepFit) -> np.ndarray:
    lo, hi = _measured_range(baseline, variant)
    return np.array([lo <= C <= hi for C in budgets])


def _matched_notes(row: dict, baseline: SweepFit, point: dict, g: int) -> list[str]:
    """Where the matched-N and matched-D baselines leave the baseline's sampled sizes or token counts."""
    out = []
    for name, values in (("matched N", (("N", row["N_variant"]), ("D", point["D_matched"][0, g]))),
                         ("matched D", (("N", point["N_matched"][0, g]), ("D", row["D_variant"])))):
        off = [f"{column} = {sci(float(v))}" for column, v in values
               if not (np.isfinite(v) and outside(float(v), baseline.span(column)) == 1.0)]
        if off:
            out.append(f"{name}: the baseline's model leaves its sampled sizes and token counts ({', '.join(off)})")
    return out


def _law(f: LossFrontier) -> dict:
    names = ("E", "A", "B", "alpha", "beta") if f.is_surface else ("E", "k", "p")
    out = {n: float(getattr(f, n)[0]) for n in names}
    if f.is_surface:
        out["loss_exponent"] = out["alpha"] * out["beta"] / (out["alpha"] + out["beta"])
    else:
        out["C_ref"], out["loss_exponent"] = f.x_ref, -out["p"]
    return out


def warnings_for(comparison: dict, *, baseline: str, variant: str, level: float) -> list[str]:
    """The sentences a reader must see before trusting M: crossing, significance, dependence on C, extrapolation."""
    rows, out = comparison["rows"], []
    for kind, cross in (("", [x for x in comparison["crossings"] if x["measured"]]),
                        (", beyond the budgets both sweeps swept (an extrapolation of both laws)",
                         [x for x in comparison["crossings"] if not x["measured"]])):
        if cross:
            interval = cross[0]["from_interval"]
            above = [r for r in rows if (r["verdict"] == AHEAD if interval else r["M"] > 1)]
            below = [r for r in rows if (r["verdict"] == BEHIND if interval else r["M"] < 1)]
            out.append(f"the curves cross at C = {', '.join(sci(x['C']) for x in cross)} FLOPs{kind}: {variant} is "
                       f"ahead (M > 1) at {_budgets(above)} and behind (M < 1) at {_budgets(below)}, so which sweep "
                       "is better changes with the budget" + ("" if interval else " (point estimates: no bootstrap "
                                                                 "interval, compare.bootstrap=0)"))
    unclear = [r for r in rows if r["verdict"] == UNCLEAR and r["measured"]]
    if unclear:
        out.append(f"{variant}'s difference from {baseline} is not significant at {_budgets(unclear)} (the {level:.0%} "
                   "interval of M contains 1)")
    t = comparison["trend"]
    if t["per_decade"] is not None and abs(t["per_decade"] - 1) > TREND_TOL:
        lo, hi = t["ci"]
        sure = (np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))
        laws = comparison["laws"]
        words = {"exponents": "the fitted laws' exponents differ (" + ", ".join(
            f"{q} {laws['baseline'][q]:.3g} vs {laws['variant'][q]:.3g}" for q in ("alpha", "beta", "p")
            if q in laws["baseline"] and q in laws["variant"]) + ")",
                 "E": f"the fitted floors differ (E {laws['baseline']['E']:.4g} vs {laws['variant']['E']:.4g}: with "
                      "equal exponents, the losses approach different floors)"}
        cause = " and ".join(words[c] for c in comparison.get("trend_cause") or ["exponents"])
        out.append(f"M depends on the budget: it changes by a factor {t['per_decade']:.3g} per decade of compute over "
                   f"the measured budgets ({'significantly' if sure else 'within the noise'}; {cause}), so no single "
                   f"multiplier describes {variant}: quote M at a budget")
    unreachable = [r for r in rows if not np.isfinite(r["M"])]
    if unreachable:
        out.append(f"at {_budgets(unreachable)} {variant}'s predicted loss is below {baseline}'s fitted floor E: no "
                   "baseline compute reaches it (M is unbounded there, an extrapolation of both laws)")
    far = [r for r in rows if r["measured"] and np.isfinite(r["M"]) and r["baseline_outside"] > FAR]
    if far:
        out.append(f"at {_budgets(far)} {baseline} needs compute more than {FAR:g}x beyond its swept budgets to match "
                   f"{variant}: M there rests on {baseline}'s extrapolated law (sweep {baseline} further)")
    beyond = [r for r in rows if not r["measured"]]
    if beyond:
        out.append(f"at {_budgets(beyond)}, beyond the budgets both sweeps swept, M extrapolates the fitted laws: a "
                   "forecast, not a measurement")
    if comparison["n_resamples"] and comparison["n_valid"] < 0.8 * comparison["n_resamples"]:
        out.append(f"only {comparison['n_valid']} of {comparison['n_resamples']} paired bootstrap resamples could be "
                   "fitted: the interval rests on the resamples that could")
    return out


def _budgets(rows: list[dict]) -> str:
    return ", ".join(sci(r["C"]) for r in rows) or "no budget"
