"""The checks a frontier must pass before its headline is stated as an answer.

A fit always produces numbers; whether they deserve a confident sentence is decided here, from the fit alone,
so the printed summary, the report and anyone reading fit.json see the same verdict. Each check says what it
measured, its threshold, and what would fix it (a command where one exists):

1. minima bracketed: every swept budget's IsoFLOP minimum lies inside its sampled sizes, with 2 sizes on each
   side (Hoffmann et al. 2022 approach 2 needs it; an edge vertex is an extrapolation, Besiroglu et al. 2024);
2. enough budgets: at least 3 (two budgets fix a line through two points: no exponent has been tested);
3. methods agree: the headline's allocation exponent a within 0.05 of IsoFLOP's (two estimators with different
   assumptions: a disagreement means the law's form or the design is wrong, not noise; where the other
   estimators agree with each other and the headline lies outside them all, it says the headline is the odd one
   out, and does not ask for more sizes: `odd_one_out`);
4. allocations agree: at every target budget the headline's N_opt and D_opt within a factor 1.5 of VPNLS's
   (unbiased on IsoFLOP designs) and IsoFLOP's (biased by wide or off-centre grids: Open-Athena
   scaling-law-analysis): agreement on a alone hides a 2.3x disagreement in N_opt at Llama 3's flagship budget;
5. a is known: its bootstrap interval no wider than 0.2, inside [0, 1] (the range a can take), and no parameter
   of the headline fit on a bound of its box (a stuck parameter makes a conditional on it, and its interval
   too narrow: (Mis)Fitting's non-embedding fit has E on its lower bound and a "known" to 0.02);
6. it predicts: fitted without the largest budget, the headline law predicts that budget like with like (its
   L_opt against the held-out parabola's minimum and N_opt within a factor 1.25 of the vertex's when the
   minimum is bracketed, else each held-out run against the law at that run's N and D), with at most half the
   error of the "no improvement" predictor (the held-out best loss = the best loss of the training budgets);
7. E is right: where the data's irreducible loss is known (a synthetic language's entropy floor, or fit.floor),
   the fitted E is within 5% of it or its interval covers it, and not on its bound;
8. the law fits within the noise: where design points have 2 or more seeds, the points' mean losses lie about
   the headline law no further than the seeds' own spread allows (the lack-of-fit F-test, p >= 0.01:
   fitting/lack_of_fit.py); a law that misses the runs has an interval narrower than its error, and more seeds
   do not help, so the interval check then says so instead of asking for seeds;
9. extrapolation (a warning, with its own words): target budgets more than one decade past the largest swept
   budget, where the law's form is untested (the hold-out tests one budget ahead).
A check that cannot run (no IsoFLOP profiles, no floor known, no bootstrap) is reported as not run, never as
passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from orchestrator.fitting import methods as registry
from orchestrator.fitting.command_line import CommandLine
from orchestrator.fitting.lack_of_fit import P_LEVEL, misses
from orchestrator.fitting.result import LAW, Check, CheckStatus, FitResult, MethodResult

A_AGREEMENT = 0.05
A_WIDTH = 0.2
ALLOCATION_FACTOR = 1.5
HOLDOUT_SKILL = 0.5  # the law's hold-out error at most this fraction of the "no improvement" predictor's
HOLDOUT_N_OPT = 1.25  # predicted N_opt within this factor of a bracketed held-out vertex
FLOOR_REL = 0.05
MIN_BUDGETS = 3
EXTRAPOLATION_DECADES = 1.0
BOUND_NAMES = {"a": "A", "b": "B", "e": "E"}  # surface.PARAMS (log A, log B, log E) as the law's names


def headline_method(result: FitResult) -> str | None:
    """The method the headline reports: the first frontier method of fit.methods that succeeded."""
    return next((m for m, r in result.ok_methods().items() if m in registry.frontier_methods() and r.predictions),
                None)


def run_checks(result: FitResult, *, command: CommandLine | str | None = None) -> list[Check]:
    """Every check of the module docstring on a fit; `command` is the user's command line (fitting/
    command_line.py; a plain string is a prefix, e.g. `python -m orchestrator sweep=cpu_small`): each fix is that
    command with its change, and a change already in effect is never suggested."""
    primary = headline_method(result)
    rerun = command if isinstance(command, CommandLine) else CommandLine(
        program=command or "python -m orchestrator <your sweep>")
    return [_bracketed(result, rerun), _budgets(result, rerun), _agree(result, primary, rerun),
            _allocation(result, primary), _width(result, primary, rerun), _fits_noise(result, rerun),
            holdout_check(result.holdout, primary), _floor(result), _extrapolation(result)]


def _ok(result: FitResult, method: str | None) -> MethodResult | None:
    """The method's result when it fitted, else None."""
    r = result.method(method) if method is not None else None
    return r if r is not None and r.ok else None


def trustworthy(checks: list[Check]) -> bool:
    decided = (CheckStatus.PASS, CheckStatus.FAIL)
    return all(c.status is CheckStatus.PASS for c in checks if c.status in decided) and not any(
        c.status is CheckStatus.SKIPPED and c.name in ("bracketed", "agree", "budgets") for c in checks)


def on_bound(result: FitResult, method: str | None) -> list[str]:
    """The headline fit's parameters on a bound of its box, as the law names them (E, A, B, alpha, beta)."""
    r = result.method(method) if method is not None else None
    names = ((r.convergence if r is not None else None) or {}).get("on_bound") or []
    return [BOUND_NAMES.get(n, n) for n in names]


def bound_words(result: FitResult, method: str, names: list[str]) -> str:
    e = result.method(method)
    law = {n: e.law(n) if e is not None and n in LAW else None for n in names}
    values = ", ".join(f"{n} = {law[n]:.3g}" if isinstance(law[n], (int, float)) else n for n in names)
    return f"{method} has {values} on the bound of its search box (the optimum wants to leave the box)"


def _wider(rerun: CommandLine) -> str:
    """The fix for unbracketed minima: adaptive placement where it is off, else a wider span of sizes."""
    if rerun.settings.get("fit.runs_csv", "null") != "null":
        return "these runs come from fit.runs_csv: add runs with sizes past each unbracketed edge"
    adaptive = rerun.with_("adaptive.enabled=true")
    if adaptive is not None:
        return f"{adaptive} (adds sizes where a minimum is unbracketed), or widen sweep.span"
    span = float(rerun.settings.get("sweep.span", "nan"))
    wider = rerun.with_(f"sweep.span={2 * span:g}") if math.isfinite(span) else None
    return (f"{wider} (adaptive placement is on and stopped at its limits: a wider span of sizes)" if wider else
            "widen sweep.span or raise adaptive.max_sizes (adaptive placement is already on)")


def _bracketed(result: FitResult, rerun: CommandLine) -> Check:
    title = "IsoFLOP minima bracketed"
    iso = result.method("isoflop")
    budgets = result.budgets.get("values", [])
    if not budgets:
        return Check("bracketed", title, CheckStatus.SKIPPED, "no run lies on an IsoFLOP profile (no shared budgets)",
                     "plan an IsoFLOP sweep (sweep.kind=isoflop) so each budget has a minimum to find")
    if iso is None or not iso.ok:
        reason = "not run" if iso is None else iso.reason
        return Check("bracketed", title, CheckStatus.FAIL, f"no IsoFLOP fit: {reason.split(' (')[0]}", _wider(rerun))
    edge = [p for p in iso.profiles if p.edge]
    skipped = iso.skipped_budgets
    good = len(iso.profiles) - len(edge)
    detail = f"{good} of {len(budgets)} budgets have their minimum inside the sampled sizes"
    if not edge and not skipped:
        return Check("bracketed", title, CheckStatus.PASS, detail)
    where = []
    for p in edge:
        side = "below" if p.N_opt < math.sqrt(p.N_min * p.N_max) else "above"
        where.append(f"C={p.budget:.3g}: sizes {side} N={p.N_opt:.3g}")
    for s in skipped:
        where.append(f"C={s['budget']:.3g}: {s['reason'].split(':')[0]}")
    return Check("bracketed", title, CheckStatus.FAIL, f"{detail}; missing: {'; '.join(where)}", _wider(rerun))


def _budgets(result: FitResult, rerun: CommandLine) -> Check:
    title = f"enough budgets (at least {MIN_BUDGETS})"
    budgets = result.budgets.get("values", [])
    if not budgets:
        return Check("budgets", title, CheckStatus.SKIPPED, "no run lies on an IsoFLOP profile (no shared budgets)",
                     "plan an IsoFLOP sweep (sweep.kind=isoflop) with at least 3 budgets")
    detail = f"{len(budgets)} budgets swept"
    if len(budgets) >= MIN_BUDGETS:
        return Check("budgets", title, CheckStatus.PASS, detail)
    return Check("budgets", title, CheckStatus.FAIL,
                 detail + ": a frontier through fewer than 3 minima has no tested exponent, "
                 "and leaving one out leaves nothing to extrapolate from",
                 _more_budgets(rerun, budgets))


def _more_budgets(rerun: CommandLine, budgets: list[float]) -> str:
    """The rerun with the swept budgets extended half a decade at a time to 3 (already run ones are not rerun)."""
    if rerun.settings.get("fit.runs_csv", "null") != "null":
        return "these runs come from fit.runs_csv: add runs at 3 or more budgets, half a decade apart"
    more = sorted(budgets)
    while len(more) < MIN_BUDGETS:
        more.append(more[-1] * math.sqrt(10))
    change = rerun.with_("sweep.budgets=[" + ",".join(f"{c:.3g}" for c in more) + "]")
    return f"{change} (3 or more budgets, half a decade apart; finished trials are not rerun)" if change else \
        "add budgets half a decade apart (sweep.budgets)"


def _a(result: FitResult, method: str | None) -> tuple[float | None, tuple[float, float] | None]:
    e = _ok(result, method)
    if e is None:
        return None, None
    return e.a, e.interval("a")


def _agree(result: FitResult, primary: str | None, rerun: CommandLine) -> Check:
    title = f"methods agree (|a - a_IsoFLOP| <= {A_AGREEMENT})"
    a, _ = _a(result, primary)
    other = "isoflop" if primary != "isoflop" else "vpnls"
    b, _ = _a(result, other)
    if a is None or b is None:
        return Check("agree", title, CheckStatus.SKIPPED,
                     f"{other} did not fit, so there is nothing to compare the headline with",
                     "an IsoFLOP design with at least 2 bracketed budgets gives the second estimate")
    diff = abs(a - b)
    detail = f"{primary} a = {a:.3f}, {other} a = {b:.3f} (difference {diff:.3f})"
    if diff <= A_AGREEMENT:
        return Check("agree", title, CheckStatus.PASS, detail)
    odd = odd_one_out(result, primary, a)
    if odd:
        seeds = None if result.lack_of_fit is not None and result.lack_of_fit.ok else rerun.with_("sweep.seeds=[0,1]")
        return Check("agree", title, CheckStatus.FAIL, f"{detail}; {odd}", MISS_FIX + (
            f"; {seeds} (a second seed) lets the check 'law fits within the noise' test the law" if seeds else ""))
    sizes = rerun.settings.get("sweep.sizes_per_budget", "")
    more = rerun.with_(f"sweep.sizes_per_budget={int(sizes) + 2}") if sizes.isdigit() else None
    return Check("agree", title, CheckStatus.FAIL, detail,
                 f"{more} (more sizes per budget), and more budgets; check the minima are bracketed" if more else
                 "more sizes per budget (sweep.sizes_per_budget) and more budgets; check the minima are bracketed")


def odd_one_out(result: FitResult, primary: str | None, a: float) -> str:
    """Where the headline's a (`primary`'s) differs from IsoFLOP's: the sentence saying it is the odd one out when
    the other frontier methods that fitted (2 or more of VPNLS, IsoFLOP, the envelope) agree with each other
    within A_AGREEMENT and the headline's a lies outside their range; else ''. More sizes per budget would then
    not settle it: the other estimators already agree on the same runs, and it is the headline's estimate that
    differs (Besiroglu et al. 2024: Chinchilla's approach 3 disagreed with its approaches 1 and 2, and its fit,
    not the data, was at fault; a log-space Huber fit and VPNLS's loss-space least squares of the same law
    disagreeing is that kind of evidence)."""
    others = {m: v for m in registry.frontier_methods() if m != primary and not registry.get(m).derived
              and (v := _a(result, m)[0]) is not None}
    if len(others) < 2:
        return ""
    low, high = min(others.values()), max(others.values())
    if high - low > A_AGREEMENT or low <= a <= high:
        return ""
    names = list(others)
    return (f"{', '.join(names[:-1])} and {names[-1]} agree with each other (a = {low:.3f} to {high:.3f}, spread "
            f"{high - low:.3f}) and the headline's {primary} lies {'below' if a < low else 'above'} them all: the "
            f"other estimators agree on these runs, so more sizes will not settle it; it is {primary}'s estimate "
            "that differs")


def _allocation(result: FitResult, primary: str | None) -> Check:
    title = f"allocations agree (N_opt and D_opt at each target within {ALLOCATION_FACTOR}x of VPNLS and IsoFLOP)"
    referees = [m for m in registry.names(referee=True) if m != primary and _ok(result, m) is not None
                and result.methods[m].predictions]
    if primary is None or not referees:
        return Check("allocation", title, CheckStatus.SKIPPED,
                     "no second frontier (VPNLS or IsoFLOP) to compare N_opt with",
                     "keep vpnls and isoflop in fit.methods, on an IsoFLOP design")
    worst: tuple[float, str] | None = None
    flagged = []
    for c, p in result.methods[primary].predictions.items():
        for m in referees:
            q = result.methods[m].predictions.get(c)
            if not q:
                continue
            for what in ("N_opt", "D_opt"):
                x, y = p[what], q[what]
                ratio = x / y if x > 0 and y > 0 else math.inf
                factor = max(ratio, 1 / ratio) if ratio > 0 else math.inf
                words = f"at C={c} {primary} {what} {x:.3g} vs {m} {y:.3g} ({ratio:.2f}x)"
                if worst is None or factor > worst[0]:
                    worst = (factor, words)
                if factor > ALLOCATION_FACTOR and what == "N_opt":
                    flagged.append(words)
    if worst is None:
        return Check("allocation", title, CheckStatus.SKIPPED, "no target budget in common with VPNLS or IsoFLOP")
    if worst[0] <= ALLOCATION_FACTOR:
        return Check("allocation", title, CheckStatus.PASS, f"largest disagreement {worst[1]}")
    detail = "; ".join(flagged) if flagged else f"largest disagreement {worst[1]}"
    return Check("allocation", title, CheckStatus.FAIL,
                 detail + " (the frontier's answer depends on the estimator: the law's "
                 "form or the design, not noise)",
                 "bracket every minimum with sizes centred on it (IsoFLOP's vertex is biased by wide or off-centre "
                 "grids), add budgets nearer the target, and quote the range the estimators span")


def _width(result: FitResult, primary: str | None, rerun: CommandLine) -> Check:
    title = f"allocation exponent known (95% interval of a inside [0, 1] and no wider than {A_WIDTH}; no parameter " \
            "on a bound)"
    a, ci = _a(result, primary)
    stuck = on_bound(result, primary)
    if a is None or (ci is None and not stuck):
        return Check("a_interval", title, CheckStatus.SKIPPED, "no bootstrap interval (fit.bootstrap=0)",
                     "refit with fit.bootstrap=1000")
    problems = []
    if ci is not None:
        width = ci[1] - ci[0]
        detail = f"a = {a:.3f} in [{ci[0]:.3f}, {ci[1]:.3f}] (width {width:.3f})"
        if ci[0] < 0 or ci[1] > 1:
            problems.append("the interval leaves [0, 1], the range a can take: resamples end in degenerate fits, so "
                            "the interval is not an interval of a")
        if width > A_WIDTH:
            problems.append("too wide to tell whether parameters or tokens should grow faster")
    else:
        detail = f"a = {a:.3f} (no bootstrap interval)"
    if stuck:
        problems.append(bound_words(result, primary, stuck) + ": a is conditional on the stuck value and its "
                        "interval understates the uncertainty")
    if not problems:
        return Check("a_interval", title, CheckStatus.PASS, detail)
    seeds = rerun.with_("sweep.seeds=[0,1,2]")
    noise_fix = (f"{seeds} (averages out seed noise), or add budgets to widen the lever arm" if seeds else
                 "add budgets to widen the lever arm (3 seeds already run)")
    if misses(result.lack_of_fit):
        noise_fix = "more seeds will not narrow it: the law misses the runs by more than their noise (see the " \
                    "check 'law fits within the noise'); " + MISS_FIX
    return Check("a_interval", title, CheckStatus.FAIL, detail + "; " + "; ".join(problems),
                 noise_fix if not stuck else "fit the other N convention (fit.n_convention), fix E at a known floor "
                 "(fit.floor=...), or add larger models and budgets so every term of the law is measured")


MISS_FIX = ("check the rate and batch at each size (an hparams rule that helps some sizes more than others bends "
            "the profiles: the report's untuned cells, Porian et al. 2024) and the shapes (one family, width steps), "
            "compare law forms (fit.json forms), and read the minima (IsoFLOP, VPNLS) meanwhile")


def _fits_noise(result: FitResult, rerun: CommandLine) -> Check:
    title = f"law fits within the noise (lack-of-fit F-test against the seeds' spread, p >= {P_LEVEL})"
    lof = result.lack_of_fit
    if lof is None or not lof.ok:
        seeds = rerun.with_("sweep.seeds=[0,1]")
        return Check("fits_noise", title, CheckStatus.SKIPPED,
                     lof.reason if lof is not None else "no headline law to test",
                     f"{seeds} (a second seed measures the noise; finished trials are not rerun)" if seeds else
                     "run 2 or more seeds of each design point (sweep.seeds)")
    detail = (f"{lof.method}: the {lof.n_points} design points' mean losses lie {1000 * lof.scatter:.1f} mnats "
              f"(rms) about the law, seeds {1000 * lof.seed_sd:.1f} mnats apart (sd); F = {lof.F:.2f} on "
              f"({lof.df_lof}, {lof.df_pe}) degrees of freedom, p = {lof.p_value:.2g}")
    if lof.worst_budget is not None:
        detail += (f"; the C={lof.worst_budget:.3g} profile sits {1000 * abs(lof.worst_budget_offset):.1f} mnats "
                   f"{'above' if lof.worst_budget_offset > 0 else 'below'} it on average")
    if not misses(lof):
        return Check("fits_noise", title, CheckStatus.PASS, detail)
    return Check("fits_noise", title, CheckStatus.FAIL,
                 detail + ": the law's form misses these runs by more than their noise: its interval measures the "
                 "noise, not that error, and more seeds will not fix it", MISS_FIX)


def holdout_check(holdout: Mapping | None, primary: str | None) -> Check:
    """Check 6 of the module docstring on the fit's leave-largest-budget-out (FitResult.holdout) for the headline
    method `primary`."""
    title = (f"predicts a held-out budget (error at most {HOLDOUT_SKILL:.0%} of the no-improvement predictor's; "
             f"N_opt within {HOLDOUT_N_OPT}x of a bracketed minimum)")
    h = holdout or {}
    if h.get("status") != "ok" or primary not in h.get("methods", {}):
        return Check("holdout", title, CheckStatus.SKIPPED, h.get("reason", "leave-largest-budget-out was not run"),
                     "sweep at least 3 budgets, so one can be left out")
    m = h["methods"][primary]
    if m.get("status") != "ok":
        return Check("holdout", title, CheckStatus.FAIL if m.get("status") == "failed" else CheckStatus.SKIPPED,
                     f"{primary} could not be scored without the largest budget: {m.get('reason')}", "add budgets")
    if not all(_finite(m.get(k)) for k in ("loss_rel_error", "baseline_rel_error")) or (
            m["kind"] == "minimum" and not all(_finite(m.get(k)) for k in ("predicted_best_loss", "N_opt_ratio"))):
        return Check("holdout", title, CheckStatus.FAIL,
                     f"{primary} fitted without C={h['budget']:.3g} predicts no finite loss there", "add budgets")
    err, base = abs(m["loss_rel_error"]), m["baseline_rel_error"]
    obs = h["observed"]
    if m["kind"] == "minimum":
        detail = (f"{primary} fitted without C={h['budget']:.3g} predicts L_opt {m['predicted_best_loss']:.4g} vs the "
                  f"held-out minimum {obs['best_loss']:.4g} ({m['loss_rel_error']:+.2%}; no improvement: "
                  f"{base:.2%}), N_opt {m['predicted_N_opt']:.3g} vs {obs['N_opt']:.3g} (ratio {m['N_opt_ratio']:.2f}, "
                  f"{m['regret_rel']:+.2%} loss at that allocation)")
        ratio_ok = 1 / HOLDOUT_N_OPT <= m["N_opt_ratio"] <= HOLDOUT_N_OPT
    else:
        detail = (f"{primary} fitted without C={h['budget']:.3g} predicts its {m['n_scored']} runs (minimum not "
                  f"bracketed) with RMS error {err:.2%} at each run's N and D (no improvement: {base:.2%})")
        ratio_ok = True
    loss_ok = err <= HOLDOUT_SKILL * base
    if loss_ok and ratio_ok:
        return Check("holdout", title, CheckStatus.PASS, detail)
    why = []
    if not loss_ok:
        why.append("the loss is predicted no better than by assuming no improvement" if err >= base else
                   "the loss error is more than half the no-improvement error")
    if not ratio_ok:
        why.append("the law puts N_opt in the wrong place")
    return Check("holdout", title, CheckStatus.FAIL, detail + ": " + "; ".join(why),
                 "the law does not extrapolate one budget ahead: check the largest budget's runs are valid points, "
                 "compare law forms (fit.json forms), then add a budget beyond it")


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _floor(result: FitResult) -> Check:
    title = f"E consistent with the known floor (within {FLOOR_REL:.0%} or inside E's interval, not on its bound)"
    check = result.floor_check or {}
    if check.get("status") != "ok":
        return Check("floor", title, CheckStatus.SKIPPED,
                     "the data's irreducible loss is not known (set fit.floor to check it)")
    E, floor, ci = check["E"], check["floor"], check.get("E_ci")
    inside = bool(ci and None not in ci and ci[0] <= floor <= ci[1])
    close = abs(E / floor - 1) <= FLOOR_REL
    where = f", interval [{ci[0]:.4g}, {ci[1]:.4g}]" if ci and None not in ci else ""
    detail = f"fitted E = {E:.4g}{where}; known floor {floor:.4g} ({E / floor - 1:+.1%})"
    stuck = "E" in on_bound(result, "parametric")
    if (inside or close) and not stuck:
        return Check("floor", title, CheckStatus.PASS, detail)
    if stuck:
        detail += "; " + bound_words(result, "parametric", ["E"])
    return Check("floor", title, CheckStatus.FAIL, detail,
                 "the runs do not reach the regime where the law's E means the data's entropy: larger models and "
                 "budgets, or compare with the fit that fixes E at the floor (parametric_floor)")


def _extrapolation(result: FitResult) -> Check:
    title = f"targets within {EXTRAPOLATION_DECADES:g} decade of the largest swept budget"
    swept = result.swept_range or result.budgets.get("values") or result.slope_budgets
    targets = result.target_budgets
    if not swept or not targets:
        return Check("extrapolation", title, CheckStatus.SKIPPED, "no swept or target budgets recorded")
    top = max(swept)
    far = [c for c in targets if c > top * 10 ** EXTRAPOLATION_DECADES * 1.0001]
    if not far:
        return Check("extrapolation", title, CheckStatus.PASS,
                     f"every target budget is within one decade of C={top:.3g}")
    words = ", ".join(f"C={c:.3g} ({math.log10(c / top):.1f} decades)" for c in far)
    return Check("extrapolation", title, CheckStatus.WARN,
                 f"the frontier is quoted at {words} past the largest swept budget C={top:.3g}: there N_opt, D_opt "
                 "and the loss extrapolate the law's form, which the hold-out (one budget ahead) has not tested",
                 f"sweep a budget within a decade of the target, or read the frontier only up to C={top * 10:.3g}")
