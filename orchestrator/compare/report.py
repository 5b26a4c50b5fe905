"""The comparison report: what it says (`content`), and every file of <fit.out_dir>/<compare.name>/.

`content` turns compare.json into plain-text sentences and tables once, so that index.html and report.md
(compare/pages.py) say the same thing: the headline (M at the largest budget both sweeps swept, whether it is
significant, whether it depends on C, how far the targets extrapolate, whether each frontier passed its own
checks), the checks, the warnings, the figures, one table per variant (separate fits, then the joint fit with a
shared E when asked for), the sweeps and the provenance. The pages escape every string for their format.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.compare.multiplier import AHEAD, BEHIND, TREND_TOL
from orchestrator.compare.pages import Content, Table, html, markdown
from orchestrator.report.page import Figure
from orchestrator.report.text import MISSING, count, extrapolation, interval, num, sci

FILES = {
    "index.html": "this report, self-contained (figures embedded)",
    "report.md": "the same report in Markdown (figures as the PNGs beside it)",
    "compare.json": "every number of the comparison: M(C) per variant and budget with intervals, laws, curves, "
                    "warnings, provenance",
    "multiplier.csv": "one row per fit, variant and budget: M, its interval, matched-N and matched-D multipliers",
    "fits/<sweep>/fit.json": "each sweep's own fit (every method, intervals, checks), as action=fit writes it",
}


def write_report(result: dict, *, folder: Path) -> list[Path]:
    """compare.json, multiplier.csv, the figures, report.md and index.html in `folder`; returns their paths."""
    from orchestrator.report.figures.compare import draw_comparison  # noqa: PLC0415  (matplotlib)

    folder.mkdir(parents=True, exist_ok=True)
    written = [write_json(result, folder / "compare.json")]
    multiplier_rows(result).to_csv(folder / "multiplier.csv", index=False)
    written.append(folder / "multiplier.csv")
    figures = draw_comparison(result, out_dir=folder)
    written += [f.path for f in figures if f.path is not None]
    page = content(result, figures=figures)
    (folder / "report.md").write_text(markdown(page), encoding="utf-8")
    (folder / "index.html").write_text(html(page), encoding="utf-8")
    return [folder / "index.html", folder / "report.md", *written]


def write_json(result: dict, path: Path) -> Path:
    """Strict JSON: NaN and inf become null (an unbounded M is also said in words: its row's notes)."""
    path.write_text(json.dumps(_jsonable(result), indent=2, allow_nan=False) + "\n")
    return path


def _jsonable(obj: object) -> object:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def multiplier_rows(result: dict) -> pd.DataFrame:
    """multiplier.csv: one row per (fit, variant, budget)."""
    rows = []
    for fit_kind, comparisons in (("separate", result["comparisons"]),
                                  ("joint_E", (result.get("joint") or {}).get("comparisons", []))):
        for c in comparisons:
            for r in c["rows"]:
                rows.append({"fit": fit_kind, "baseline": c["baseline"], "variant": c["variant"], "C": r["C"],
                             "measured": r["measured"], "L_base": r["L_base"], "L_variant": r["L_variant"],
                             "M": r["M"], "M_lo": r["M_ci"][0], "M_hi": r["M_ci"][1], "verdict": r["verdict"],
                             "C_base": r["C_base"], "M_N": r.get("M_N"), "M_N_lo": r.get("M_N_ci", [None])[0],
                             "M_N_hi": r.get("M_N_ci", [None, None])[1], "M_D": r.get("M_D"),
                             "M_D_lo": r.get("M_D_ci", [None])[0], "M_D_hi": r.get("M_D_ci", [None, None])[1],
                             "notes": "; ".join(r["notes"] + r.get("matched_notes", []))})
    return pd.DataFrame(rows)


def content(result: dict, *, figures: list[Figure]) -> Content:
    variants = ", ".join(result["variants"])
    boot = result.get("bootstrap")
    meta = (f"baseline {result['baseline']}; variants {variants}; method {result['method']}; "
            + (f"{boot['resamples']} bootstrap resamples per sweep, {result['level']:.0%} intervals" if boot else
               "no bootstrap (compare.bootstrap=0): no intervals")
            + f"; generated {result['provenance']['generated']}")
    tables = [_multiplier_table(c, k, level=result["level"], joint=False) for k, c in enumerate(result["comparisons"])]
    joint = result.get("joint")
    if joint:
        tables += [_multiplier_table(c, k, level=result["level"], joint=True, E=joint["E"])
                   for k, c in enumerate(joint["comparisons"])]
    warnings = [w for c in result["comparisons"] for w in c["warnings"]]
    warnings += [f"{s['role']} {s['name']}: its frontier failed its own checks ("
                 + "; ".join(f"{c['title']}: {c['detail']}" for c in s["checks"] if c["status"] == "fail")
                 + "); M inherits its errors" for s in _distinct(result) if not s["trustworthy"]]
    prov = result["provenance"]
    code = prov.get("code", {})
    provenance = [("baseline", result["baseline"]), ("variants", variants), ("method", result["method"]),
                  ("bootstrap", boot["scheme"] + f"; seeds {boot['seeds']}" if boot else "none"),
                  ("code", f"scaling-orchestrator {code.get('package') or MISSING}, git "
                           f"{code.get('git_commit') or MISSING}"),
                  ("generated", prov["generated"]), ("comparison time", f"{prov.get('seconds', 0):.3g} s")]
    options = json.dumps({"compare": prov["compare"], "fit": prov["fit"]}, default=str)
    return Content(title=f"Compute multiplier: {variants} over {result['baseline']}", meta=meta,
                   headline=headline(result), checks=_checks(result), warnings=warnings, figures=figures,
                   tables=tables, sweeps=_sweeps(result), provenance=provenance, options=options, files=FILES)


def headline(result: dict) -> list[str]:
    """The answer in sentences, per variant: M at the largest budget both sweeps swept and its interval, which
    sweep that favours, how M moves with C, the furthest target, and whether the frontiers can be trusted."""
    out = []
    level = f"{result['level']:.0%}"
    for c in result["comparisons"]:
        rows = c["rows"]
        measured = [r for r in rows if r["measured"]]
        ref = measured[-1] if measured else rows[0]
        ci = _ci(ref["M_ci"])
        said = {AHEAD: f"{c['variant']} is significantly ahead (the {level} interval lies above 1)",
                BEHIND: f"{c['variant']} is significantly behind (the {level} interval lies below 1)"}.get(
            ref["verdict"], f"the difference is not significant (the {level} interval contains 1)"
            if ref["verdict"] else "no interval was computed (compare.bootstrap=0)")
        out.append(f"At C = {sci(ref['C'])} FLOPs, the largest budget both sweeps swept, {c['variant']} is worth "
                   f"M = {_m(ref['M'])} {ci} times {c['baseline']}'s compute: {c['baseline']} needs "
                   f"{sci(ref['C_base'])} FLOPs to reach the loss {c['variant']} reaches at {sci(ref['C'])}; "
                   f"{said}.".replace("  ", " "))
        t = c["trend"]
        if len(measured) >= 2 and t["per_decade"] is not None:
            spread = ", ".join(f"{_m(r['M'])} at {sci(r['C'])}" for r in measured)
            if abs(t["per_decade"] - 1) > TREND_TOL:
                out.append(f"M depends on the budget ({spread}; a factor {num(t['per_decade'], digits=3)} per decade, "
                           f"interval {interval([10 ** v for v in t['ci']] if _finite(t['ci']) else None) or MISSING})"
                           ": the fitted laws have different exponents, so quote M at a budget, not as one number.")
            else:
                out.append(f"Over the measured budgets M stays within {TREND_TOL:.0%} per decade ({spread}), the mark "
                           "of a constant compute multiplier.")
        target = rows[-1]
        if not target["measured"] and target is not ref:
            out.append(f"Extrapolated to C = {sci(target['C'])} ({extrapolation(target['C'], swept=_swept(rows))} the "
                       f"measured budgets): M = {_m(target['M'])} {_ci(target['M_ci'])}"
                       .replace("  ", " ") + (f"; {'; '.join(target['notes'])}." if target["notes"] else "."))
        if c["crossings"]:
            out.append(f"The curves cross at C = {', '.join(_crossing(x) for x in c['crossings'])} FLOPs: which "
                       "sweep is better changes with the budget.")
    joint = result.get("joint")
    for c in (joint or {}).get("comparisons", []):
        ref = ([r for r in c["rows"] if r["measured"]] or c["rows"])[-1]
        top = c["rows"][-1]
        out.append(f"With one irreducible loss shared by every sweep (joint fit, E = {num(joint['E'])}): "
                   f"{c['variant']} is worth M = {_m(ref['M'])} {_ci(ref['M_ci'])} at {sci(ref['C'])}"
                   + (f" and M = {_m(top['M'])} {_ci(top['M_ci'])} at {sci(top['C'])}" if top is not ref else "")
                   + ".")
    failed = [s for s in _distinct(result) if not s["trustworthy"]]
    if failed:
        out.append("Not every frontier is trustworthy (" + ", ".join(f"{s['role']} {s['name']}" for s in failed)
                   + " failed some of its own checks; see Checks): the multiplier is only as right as each frontier.")
    else:
        out.append("Every compared frontier passes the checks it could run.")
    return out


def _checks(result: dict) -> Table:
    rows = []
    for s in _distinct(result):
        failed = [c for c in s["checks"] if c["status"] == "fail"]
        ran = [c for c in s["checks"] if c["status"] != "skipped"]
        rows.append(["pass" if s["trustworthy"] else "FAIL", f"{s['role']} {s['name']}: frontier checks",
                     f"{len(ran) - len(failed)} of {len(ran)} checks passed" + (
                         ": failed " + "; ".join(f"{c['title']} ({c['detail']})" for c in failed) if failed else "")])
    for c in result["comparisons"]:
        measured = [r for r in c["rows"] if r["measured"]]
        tag = f"{c['variant']} over {c['baseline']}"
        inside = [x for x in c["crossings"] if x["measured"]]
        rows.append(["FAIL" if inside else "pass", f"{tag}: curves do not cross over the measured budgets",
                     f"cross at {', '.join(_crossing(x) for x in c['crossings'])}" if c["crossings"] else
                     "M stays on one side of 1 over the table's budgets"])
        unclear = [r for r in measured if r["verdict"] not in (AHEAD, BEHIND)]
        rows.append(["not run" if not c["n_resamples"] else "FAIL" if unclear else "pass",
                     f"{tag}: difference significant at every measured budget",
                     "no bootstrap" if not c["n_resamples"] else
                     f"not significant at {', '.join(sci(r['C']) for r in unclear)}" if unclear else
                     f"the {result['level']:.0%} interval excludes 1 at all {len(measured)} measured budgets"])
        t = c["trend"]
        varies = t["per_decade"] is not None and abs(t["per_decade"] - 1) > TREND_TOL
        rows.append(["not run" if t["per_decade"] is None else "varies" if varies else "pass",
                     f"{tag}: M constant over the measured budgets (within {TREND_TOL:.0%} per decade)",
                     MISSING if t["per_decade"] is None else f"{t['per_decade']:.3f} per decade"])
        if c["n_resamples"]:
            good = c["n_valid"] >= 0.8 * c["n_resamples"]
            rows.append(["pass" if good else "FAIL", f"{tag}: bootstrap resamples fitted (at least 80%)",
                         f"{c['n_valid']} of {c['n_resamples']} pairs"])
    return Table("checks-table", "", ["outcome", "check", "measured"], rows, left=3)


def _multiplier_table(c: dict, k: int, *, level: float, joint: bool, E: float | None = None) -> Table:
    surface = "M_N" in (c["rows"][0] if c["rows"] else {})
    header = ["C (FLOPs)", "where", "L_opt baseline", "L_opt variant", f"M ({level:.0%} CI)", "verdict",
              "baseline compute"] + (["M at matched N", "M at matched D"] if surface else []) + ["notes"]
    rows = []
    lo_hi = _swept(c["rows"])
    for r in c["rows"]:
        where = "measured" if r["measured"] else f"extrapolated ({extrapolation(r['C'], swept=lo_hi)} measured)"
        cells = [sci(r["C"]), where, num(r["L_base"]), num(r["L_variant"]), _with(r["M"], r["M_ci"]),
                 r["verdict"] or MISSING, sci(r["C_base"]) if math.isfinite(r["C_base"]) else "unreachable"]
        if surface:
            cells += [_with(r["M_N"], r["M_N_ci"]), _with(r["M_D"], r["M_D_ci"])]
        cells.append("; ".join(r["notes"] + r.get("matched_notes", [])) or MISSING)
        rows.append(cells)
    which = "joint fit, one E" if joint else "separate fits"
    title = f"{c['variant']} over {c['baseline']} ({which})"
    laws = c["laws"]
    note = ("Fitted laws: baseline " + _law_text(laws["baseline"]) + "; variant " + _law_text(laws["variant"])
            + (f"; shared E = {num(E)}" if E is not None else "") + ". M at matched N / matched D: the compute the "
            "baseline needs at the variant's compute-optimal model size / token count, over C (never below M).")
    return Table(f"{'joint' if joint else 'multiplier'}-table-{k}", title, header, rows, left=2, note=note)


def _sweeps(result: dict) -> Table:
    rows = []
    for s in result["sweeps"]:
        rows.append([s["role"], s["name"], s["origin"], f"{s['n_runs']} ({s['n_excluded']} excluded)",
                     f"{sci(s['swept'][0])} to {sci(s['swept'][1])} ({len(s['budgets'])} budgets)",
                     f"{count(s['N_range'][0])} to {count(s['N_range'][1])}", _law_text(s["law"]),
                     "pass" if s["trustworthy"] else "FAIL", s["fit_json"]])
    return Table("sweeps-table", "", ["role", "sweep", "source", "runs fitted", "budgets swept", "sizes",
                                      f"fitted law ({result['method']})", "frontier checks", "fit"], rows, left=3)


def _law_text(law: dict) -> str:
    if "alpha" in law:
        return (f"E = {num(law['E'])}, A = {num(law['A'])}, B = {num(law['B'])}, "
                f"alpha = {num(law['alpha'], digits=3)}, beta = {num(law['beta'], digits=3)}")
    return f"L_opt = {num(law['E'])} + {num(law['k'])} (C / {sci(law.get('C_ref', 1.0))})^{num(law['p'], digits=3)}"


def _distinct(result: dict) -> list[dict]:
    seen, out = set(), []
    for s in result["sweeps"]:
        if s["name"] not in seen:
            seen.add(s["name"])
            out.append(s)
    return out


def _swept(rows: list[dict]) -> tuple[float, float]:
    measured = [r["C"] for r in rows if r["measured"]] or [r["C"] for r in rows]
    return min(measured), max(measured)


def _crossing(x: dict) -> str:
    return sci(x["C"]) + ("" if x["measured"] else " (beyond the measured budgets)")


def _m(x: float) -> str:
    return num(x, digits=4) if math.isfinite(x) else "unbounded"


def _ci(ci: list | None) -> str:
    """'[lo, hi]' of M, 'unbounded' for an infinite bound, '' without an interval."""
    if not ci or len(ci) != 2 or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return ""
    return f"[{_m(ci[0])}, {_m(ci[1])}]"


def _with(x: float, ci: list) -> str:
    text = _ci(ci)
    return f"{_m(x)} {text}" if text else _m(x)


def _finite(values: list) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
