"""How numbers read in the report: counts with SI suffixes, FLOPs in scientific notation, intervals.

Shared by the HTML and Markdown pages so both say the same thing in the same words. Missing values
(None, NaN) print as an en dash rather than "nan", because a reader takes "nan" for a bug.
"""

from __future__ import annotations

import math

MISSING = "\u2013"
_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def count(x: float | None, *, digits: int = 3) -> str:
    """Parameters or tokens: 1.68e9 -> '1.68B' (B = billion, the convention of the scaling-law papers)."""
    if not finite(x):
        return MISSING
    if abs(x) >= 1e15:  # past trillions a suffix stops helping: 1.2e16
        return sci(x, digits=digits)
    for scale, suffix in _SUFFIXES:
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{suffix}"
    return f"{x:.{digits}g}"


def sci(x: float | None, *, digits: int = 3) -> str:
    """FLOPs: 2.96e21 -> '2.96e21' (no '+', no leading exponent zeros)."""
    if not finite(x):
        return MISSING
    mantissa, _, exponent = f"{x:.{digits}g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def num(x: float | None, *, digits: int = 4) -> str:
    return f"{x:.{digits}g}" if finite(x) else MISSING


def interval(bounds: tuple[float, float] | list | None, *, fmt=num) -> str:
    """'[lo, hi]', or '' when the bootstrap gave no interval for this quantity."""
    if not bounds or len(bounds) != 2 or not all(finite(b) for b in bounds):
        return ""
    return f"[{fmt(bounds[0])}, {fmt(bounds[1])}]"


def with_ci(x: float | None, bounds: tuple[float, float] | list | None, *, fmt=num) -> str:
    ci = interval(bounds, fmt=fmt)
    return f"{fmt(x)} {ci}" if ci else fmt(x)


def hours(seconds: float | None) -> str:
    """Wall time: '42 s', '3.5 min', '2.1 h'."""
    if not finite(seconds):
        return MISSING
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def extrapolation(C: float, *, swept: tuple[float, float]) -> str:
    """Where a budget lies against the swept budgets: 'in swept range', '6.5 decades above' or '3.3x below'."""
    lo, hi = swept
    if not (finite(C) and finite(lo) and finite(hi)):
        return MISSING
    if lo / 1.01 <= C <= hi * 1.01:
        return "in swept range"
    factor, side = (C / hi, "above") if C > hi else (lo / C, "below")
    return f"{factor:.2g}x {side}" if factor < 99.5 else f"{math.log10(factor):.1f} decades {side}"


def outside(x: float | None, bounds: tuple[float, float] | list | None) -> bool:
    """A point estimate outside its own bootstrap interval (percentile intervals can miss the fit to all runs
    when the resampled fits land elsewhere: the estimate is unstable, and a reader must be told)."""
    return bool(interval(bounds)) and finite(x) and not (bounds[0] <= x <= bounds[1])


def outside_note(names: list[str]) -> str:
    """The sentence that explains point estimates lying outside their intervals ('' when none do)."""
    if not names:
        return ""
    which = ", ".join(names)
    return (f"The point estimate of {which} lies outside its bootstrap interval: the fits to resampled runs land "
            "elsewhere than the fit to all runs, so the estimate is unstable; trust the interval, not the point.")
