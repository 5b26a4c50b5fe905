"""The answer in the terminal: what `run`, `fit` and `report` print last, in 3 to 6 lines (issue 25).

From the fit result alone (fitting/result.FitResult): the verdict of the checks (`fitting/checks.py`),
the allocation at the largest target budget with its intervals, and one line per failed check with its fix,
a command the user can paste. Numbers read as the report writes them (`report/text.py`): never "nan", never a
placeholder inside a sentence, and a point estimate outside its own interval is said to be one.
"""

from __future__ import annotations

from orchestrator.fitting.checks import headline_method
from orchestrator.fitting.result import Check, CheckStatus, FitResult
from orchestrator.report.text import count, extrapolation, finite, interval, num, outside, sci

MAX_LINES = 6


def _value(x: float | None, ci: tuple[float, float] | None, *, fmt, flagged: list[str], name: str) -> str:
    """'1.2M [0.9M, 1.5M]', the name added to `flagged` when the point lies outside its interval."""
    if outside(x, ci):
        flagged.append(name)
    text = fmt(x)
    return f"{text} {interval(ci, fmt=fmt)}" if interval(ci) else text


def _ratio(x: float) -> str:
    """Tokens per parameter: 94.8, 2,860 (never 2.86e+03)."""
    return f"{x:,.0f}" if finite(x) and x >= 1000 else num(x, digits=3)


def _swept(result: FitResult) -> tuple[float, float] | None:
    values = [v for v in result.budgets.get("values", []) if finite(v)]
    return (min(values), max(values)) if values else None


def allocation(result: FitResult, method: str) -> str:
    """The allocation at the largest target budget: N_opt, D_opt, tokens per parameter, loss, the exponent a."""
    entry = result.methods[method]
    preds = sorted(entry.predictions.items(), key=lambda kv: kv[1]["C"])
    key, top = preds[-1]

    def ci(q: str) -> tuple[float, float] | None:
        return entry.interval(q, budget=key)

    flagged: list[str] = []
    parts = []
    if finite(top.get("N_opt")) and finite(top.get("D_opt")):
        per = _value(top["tokens_per_param"], ci("tokens_per_param"), fmt=_ratio, flagged=flagged, name="D/N")
        n = _value(top["N_opt"], ci("N_opt"), fmt=count, flagged=flagged, name="N")
        d = _value(top["D_opt"], ci("D_opt"), fmt=count, flagged=flagged, name="D")
        parts.append(f"train N = {n} parameters on D = {d} tokens ({per} tokens per parameter)")
    if finite(top.get("loss")):
        parts.append(f"loss {_value(top['loss'], ci('loss'), fmt=num, flagged=flagged, name='the loss')}")
    if finite(entry.a):
        exp = lambda x: num(x, digits=3)  # noqa: E731
        parts.append(f"N_opt grows as C^{_value(entry.a, entry.interval('a'), fmt=exp, flagged=flagged, name='a')}")
    swept = _swept(result)
    place = extrapolation(top["C"], swept=swept) if swept else ""
    where = "" if not place else ", within the swept budgets" if place == "in swept range" else \
        f", {place} the swept budgets"
    level = entry.level
    how = f"{method}, {level:.0%} CI" if level else f"{method}; no intervals: fit.bootstrap=0"
    line = (f"At C = {sci(top['C'])} FLOPs{where}: " + "; ".join(parts) + f" ({how})." if parts else
            f"At C = {sci(top['C'])} FLOPs the {method} fit gives no finite allocation.")
    if flagged:
        line += (f" Outside its own interval: {', '.join(flagged)} (the resampled fits land elsewhere than the fit to "
                 "all runs: trust the interval).")
    return line


def _check_line(check: Check) -> str:
    fix = f"; fix: {check.fix}" if check.fix else ""
    mark = "FAIL" if check.status is CheckStatus.FAIL else "WARNING"
    return f"  {mark} {check.title}: {check.detail.rstrip('.')}{fix}"


def terminal_headline(result: FitResult, *, name: str) -> list[str]:
    """The 3 to 6 lines `run`, `fit` and `report` end with (see the module docstring)."""
    checks = result.checks
    failed = [c for c in checks if c.status is CheckStatus.FAIL]
    ran = [c for c in checks if c.status in (CheckStatus.PASS, CheckStatus.FAIL)]
    warned = [c for c in checks if c.status is CheckStatus.WARN]  # e.g. a target far past the swept budgets
    method = result.headline_method or headline_method(result)
    if method is None:
        reasons = "; ".join(r.reason for r in result.methods.values() if not r.ok)
        return [f"{name}: no method produced a compute-optimal frontier" + (f" ({reasons})." if reasons else "."),
                "  nothing below is an answer: no allocation could be fitted.",
                "  fix: more runs (more sizes per budget and more budgets), then refit."]
    if result.trustworthy:
        verdict = f"{name}: the frontier passes all {len(ran)} checks it could run" + (
            f" ({len(warned)} warning{'s' if len(warned) > 1 else ''} below)." if warned else ".")
    elif failed:
        verdict = (f"{name}: NOT YET TRUSTWORTHY: {len(failed)} of {len(checks)} checks failed; the numbers are what "
                   "the runs show so far, not an answer.")
    else:
        missing = [c.title for c in checks if c.status is CheckStatus.SKIPPED]
        verdict = f"{name}: NOT YET TRUSTWORTHY: checks that must run could not ({'; '.join(missing)})."
    lines = [verdict, allocation(result, method)]
    room = MAX_LINES - len(lines)
    flagged = failed + warned
    shown = flagged if len(flagged) <= room else flagged[:room - 1]
    lines += [_check_line(c) for c in shown]
    if len(shown) < len(flagged):
        lines.append(f"  and {len(flagged) - len(shown)} more failed checks or warnings: "
                     + "; ".join(c.title for c in flagged[len(shown):]) + " (see the report).")
    if len(lines) < 3:
        passed = "; ".join(c.title for c in checks if c.status is CheckStatus.PASS)
        skipped = "; ".join(c.title for c in checks if c.status is CheckStatus.SKIPPED)
        lines.append(f"  passed: {passed or 'none'}" + (f"; not run: {skipped}." if skipped else "."))
    return lines


