"""The checks a frontier must pass before its headline is stated as an answer.

A fit always produces numbers; whether they deserve a confident sentence is decided here, from fit.json alone,
so the printed summary, the report and anyone reading fit.json see the same verdict. Each check says what it
measured, its threshold, and what would fix it (a command where one exists):

1. minima bracketed: every swept budget's IsoFLOP minimum lies inside its sampled sizes, with 2 sizes on each
   side (Hoffmann et al. 2022 approach 2 needs it; an edge vertex is an extrapolation, Besiroglu et al. 2024);
2. methods agree: the headline's allocation exponent a within 0.05 of IsoFLOP's (two estimators with different
   assumptions: a disagreement means the law's form or the design is wrong, not noise);
3. a is known: its bootstrap interval no wider than 0.2 (wider cannot tell "tokens grow faster" from "parameters
   grow faster");
4. it predicts: fitted without the largest budget, the headline method predicts that budget's best loss within
   2% (leave-largest-budget-out);
5. E is right: where the data's irreducible loss is known (a synthetic language's entropy floor, or fit.floor),
   the fitted E is within 5% of it or its interval covers it.
A check that cannot run (no IsoFLOP profiles, no floor known, no bootstrap) is reported as not run, never as
passed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from orchestrator.fitting.command_line import CommandLine

A_AGREEMENT = 0.05
A_WIDTH = 0.2
HOLDOUT_LOSS = 0.02
FLOOR_REL = 0.05
FRONTIER_METHODS = ("parametric", "parametric_floor", "vpnls", "isoflop", "envelope")


@dataclass(frozen=True)
class Check:
    """One check: `status` pass, fail or skipped; `detail` the measured value in words; `fix` what to do."""

    name: str
    title: str
    status: str
    detail: str
    fix: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def headline_method(result: dict) -> str | None:
    """The method the headline reports: the first frontier method of fit.methods that succeeded."""
    return next((m for m in result["method_order"] if m in FRONTIER_METHODS and
                 result.get(m, {}).get("status") == "ok" and result[m].get("predictions")), None)


def run_checks(result: dict, *, command: CommandLine | str | None = None) -> list[Check]:
    """Every check of the module docstring on a fit.json dict; `command` is the user's command line (fitting/
    command_line.py; a plain string is a prefix, e.g. `python -m orchestrator sweep=cpu_small`): each fix is that
    command with its change, and a change already in effect is never suggested."""
    primary = headline_method(result)
    rerun = command if isinstance(command, CommandLine) else CommandLine(
        program=command or "python -m orchestrator <your sweep>")
    return [_bracketed(result, rerun), _agree(result, primary, rerun), _width(result, primary, rerun),
            _holdout(result, primary), _floor(result)]


def trustworthy(checks: list[Check]) -> bool:
    return all(c.status == "pass" for c in checks if c.status != "skipped") and not any(
        c.status == "skipped" and c.name in ("bracketed", "agree") for c in checks)


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


def _bracketed(result: dict, rerun: CommandLine) -> Check:
    title = "IsoFLOP minima bracketed"
    iso = result.get("isoflop", {})
    budgets = result.get("budgets", {}).get("values", [])
    if not budgets:
        return Check("bracketed", title, "skipped", "no run lies on an IsoFLOP profile (no shared budgets)",
                     "plan an IsoFLOP sweep (sweep.kind=isoflop) so each budget has a minimum to find")
    if iso.get("status") != "ok":
        return Check("bracketed", title, "fail", f"no IsoFLOP fit: {iso.get('reason', 'not run').split(' (')[0]}",
                     _wider(rerun))
    edge = [p for p in iso["profiles"] if p["edge"]]
    skipped = iso.get("skipped_budgets", [])
    good = len(iso["profiles"]) - len(edge)
    detail = f"{good} of {len(budgets)} budgets have their minimum inside the sampled sizes"
    if not edge and not skipped:
        return Check("bracketed", title, "pass", detail)
    where = []
    for p in edge:
        side = "below" if p["N_opt"] < math.sqrt(p["N_min"] * p["N_max"]) else "above"
        where.append(f"C={p['budget']:.3g}: sizes {side} N={p['N_opt']:.3g}")
    for s in skipped:
        where.append(f"C={s['budget']:.3g}: {s['reason'].split(':')[0]}")
    return Check("bracketed", title, "fail", f"{detail}; missing: {'; '.join(where)}", _wider(rerun))


def _a(result: dict, method: str | None) -> tuple[float | None, tuple[float, float] | None]:
    if method is None or result.get(method, {}).get("status") != "ok":
        return None, None
    e = result[method]
    ci = (e.get("ci") or {}).get("a")
    ok = ci and None not in ci and all(map(math.isfinite, ci))
    return e.get("a"), (tuple(ci) if ok else None)


def _agree(result: dict, primary: str | None, rerun: CommandLine) -> Check:
    title = f"methods agree (|a - a_IsoFLOP| <= {A_AGREEMENT})"
    a, _ = _a(result, primary)
    other = "isoflop" if primary != "isoflop" else "vpnls"
    b, _ = _a(result, other)
    if a is None or b is None:
        return Check("agree", title, "skipped", f"{other} did not fit, so there is nothing to compare the headline with",
                     "an IsoFLOP design with at least 2 bracketed budgets gives the second estimate")
    diff = abs(a - b)
    detail = f"{primary} a = {a:.3f}, {other} a = {b:.3f} (difference {diff:.3f})"
    if diff <= A_AGREEMENT:
        return Check("agree", title, "pass", detail)
    sizes = rerun.settings.get("sweep.sizes_per_budget", "")
    more = rerun.with_(f"sweep.sizes_per_budget={int(sizes) + 2}") if sizes.isdigit() else None
    return Check("agree", title, "fail", detail,
                 f"{more} (more sizes per budget), and more budgets; check the minima are bracketed" if more else
                 "more sizes per budget (sweep.sizes_per_budget) and more budgets; check the minima are bracketed")


def _width(result: dict, primary: str | None, rerun: CommandLine) -> Check:
    title = f"allocation exponent known (95% interval of a no wider than {A_WIDTH})"
    a, ci = _a(result, primary)
    if a is None or ci is None:
        return Check("a_interval", title, "skipped", "no bootstrap interval (fit.bootstrap=0)",
                     "refit with fit.bootstrap=1000")
    width = ci[1] - ci[0]
    detail = f"a = {a:.3f} in [{ci[0]:.3f}, {ci[1]:.3f}] (width {width:.3f})"
    if width <= A_WIDTH:
        return Check("a_interval", title, "pass", detail)
    seeds = rerun.with_("sweep.seeds=[0,1,2]")
    return Check("a_interval", title, "fail", detail,
                 f"{seeds} (averages out seed noise), or add budgets to widen the lever arm" if seeds else
                 "add budgets to widen the lever arm (3 seeds already run)")


def _holdout(result: dict, primary: str | None) -> Check:
    title = f"predicts a held-out budget (best loss within {HOLDOUT_LOSS:.0%})"
    h = result.get("holdout") or {}
    if h.get("status") != "ok" or primary not in h.get("methods", {}):
        return Check("holdout", title, "skipped", h.get("reason", "leave-largest-budget-out was not run"),
                     "sweep at least 2 budgets (3 or more to leave one out meaningfully)")
    m = h["methods"][primary]
    if m.get("status") != "ok":
        return Check("holdout", title, "fail", f"{primary} could not be refitted without the largest budget: "
                                               f"{m.get('reason')}", "add budgets")
    err = m["loss_rel_error"]
    if not _finite(err) or not _finite(m.get("predicted_best_loss")):
        return Check("holdout", title, "fail", f"{primary} fitted without C={h['budget']:.3g} predicts no finite "
                                               f"best loss there", "add budgets")
    ratio = f", N_opt ratio {m['N_opt_ratio']:.2f}" if _finite(m.get("N_opt_ratio")) else ""
    detail = (f"{primary} fitted without C={h['budget']:.3g} predicts its best loss {m['predicted_best_loss']:.4g} "
              f"vs {h['observed']['best_loss']:.4g} observed ({err:+.2%}){ratio}")
    if abs(err) <= HOLDOUT_LOSS:
        return Check("holdout", title, "pass", detail)
    return Check("holdout", title, "fail", detail,
                 "the law does not extrapolate one budget ahead: check the largest budget's runs are valid points, "
                 "then add a budget beyond it")


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _floor(result: dict) -> Check:
    title = f"E consistent with the known floor (within {FLOOR_REL:.0%} or inside E's interval)"
    check = result.get("floor_check") or {}
    if check.get("status") != "ok":
        return Check("floor", title, "skipped", "the data's irreducible loss is not known (set fit.floor to check it)")
    E, floor, ci = check["E"], check["floor"], check.get("E_ci")
    inside = bool(ci and None not in ci and ci[0] <= floor <= ci[1])
    close = abs(E / floor - 1) <= FLOOR_REL
    where = f", interval [{ci[0]:.4g}, {ci[1]:.4g}]" if ci and None not in ci else ""
    detail = f"fitted E = {E:.4g}{where}; known floor {floor:.4g} ({E / floor - 1:+.1%})"
    if inside or close:
        return Check("floor", title, "pass", detail)
    return Check("floor", title, "fail", detail,
                 "the runs do not reach the regime where the law's E means the data's entropy: larger models and "
                 "budgets, or compare with the fit that fixes E at the floor (parametric_floor)")
