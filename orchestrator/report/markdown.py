"""report.md: the report in Markdown, for a pull request, a wiki page or a terminal.

Same content and order as index.html; figures are links to the PNGs written beside it. Strings from the
user or the data are escaped (`md`) so a sweep or run name cannot inject HTML or break a table.
"""

from __future__ import annotations

import json
import re

from orchestrator.report.page import Page, headline
from orchestrator.report import tables
from orchestrator.report.tables import QUANTITIES, bounds
from orchestrator.report.text import MISSING, count, extrapolation, hours, num, sci, with_ci

MAX_EXCLUDED_ROWS = 500
_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def md(text: object) -> str:
    """Escape a string for a Markdown table cell or paragraph: HTML metacharacters become entities,
    Markdown punctuation is backslash-escaped, newlines become spaces."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", s).replace("\r", " ").replace("\n", " ")


def safe(text: object) -> str:
    """Escape generated text (numbers, method names, intervals) for HTML metacharacters and table pipes only,
    so '[lo, hi]' stays readable in the raw file."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render(page: Page) -> str:
    r = page.result
    out = [f"# Compute-optimal frontier: {md(page.name)}", "",
           f"{md(page.source)}; {r.n_runs} runs fitted"
           + (f", {len(r.excluded)} excluded" if r.excluded else "") + f"; generated {md(page.generated)}.", "",
           "## Headline", ""]
    out += [f"- {safe(s)}" for s in headline(page)] + [""]
    checks = r.checks
    if checks:
        label = {"pass": "pass", "fail": "FAIL", "skipped": "not run", "warn": "warning"}
        out += ["Checks:", "", _table(["outcome", "check", "measured", "to fix"],
                                     [[label[c.status], md(c.title), md(c.detail), md(c.fix or "")]
                                      for c in checks]), ""]
    if page.primary is not None:
        e = r.methods[page.primary]
        fmts = {"N_opt": count, "D_opt": count, "tokens_per_param": lambda x: num(x, digits=3), "loss": num}
        rows = [[sci(p["C"]), extrapolation(p["C"], swept=page.swept)]
                + [safe(with_ci(p[q], bounds(e, q, budget=key), fmt=fmts[q])) for q in QUANTITIES]
                for key, p in sorted(e.predictions.items(), key=lambda kv: kv[1]["C"])]
        out += [f"Recommendations at the target budgets ({page.primary}; {page.level_text()}):", "",
                _table(["C (FLOPs)", "vs swept budgets", "N_opt (parameters)", "D_opt (tokens)",
                        "tokens per parameter", "predicted loss"], rows)]
    rows = []
    for x in page.exponents:
        if x["status"] != "ok":
            rows.append([x["method"], x["status"]] + [MISSING] * 5 + [md(x["reason"])])
        else:
            cells = [safe(with_ci(x[q], x[f"{q}_ci"], fmt=lambda v: num(v, digits=3)))
                     for q in ("a", "b", "E", "alpha", "beta")]
            rows.append([x["method"], "ok", *cells, str(x["n_points"] or MISSING)])
    out += ["Compute-optimal exponents per method (N_opt ~ C^a, D_opt ~ C^b):", "",
            _table(["method", "status", "a", "b", "E", "alpha", "beta", "points / note"], rows)]

    out += ["## Warnings", ""]
    out += [f"- {md(w)}" for w in page.warnings] or [
        "None: every method fitted, converged and passed the hold-out check."]
    out += ["", "## Figures", ""]
    for f in page.figures:
        if f.path is None:
            out += [f"**{md(f.title)}**: not drawn: {md(f.missing)}", ""]
        else:
            out += [f"### {f.title}", "", f"![{f.title}]({f.path.name})", "", safe(f.caption), ""]

    out += ["## Methods compared", ""]
    fr = page.frontier
    if not fr.empty:
        methods = [m for m in r.method_order if m in set(fr["method"])]
        rows = []
        for C, at in fr.groupby("C", sort=True):
            by = {row["method"]: row for _, row in at.iterrows()}
            rows.append([sci(C)] + [count(by[m]["N_opt"]) if m in by else MISSING for m in methods]
                        + [num(by[m]["loss"]) if m in by else MISSING for m in methods])
        out += ["N_opt and predicted loss at the target budgets (CIs in frontier.csv):", "",
                _table(["C"] + [f"N_opt {m}" for m in methods] + [f"loss {m}" for m in methods], rows)]
    h = r.holdout or {}
    if page.holdout:
        rows = [[x["method"]] + ([num(x["predicted_best_loss"]), f"{x['loss_rel_error']:+.2%}",
                                  count(x["predicted_N_opt"]), f"{x['N_opt_ratio']:.3g}"]
                                 if x["status"] == "ok" else [md(x.get("reason", x["status"])), "", "", ""])
                for x in page.holdout]
        out += [f"Leave-largest-budget-out (held out C = {sci(h['budget'])}; observed best loss "
                f"{num(h['observed']['best_loss'])}, N_opt {count(h['observed']['N_opt'])}):", "",
                _table(["method", "predicted best loss", "loss error", "predicted N_opt", "N_opt ratio"], rows)]
    elif h:
        out += [f"Leave-largest-budget-out skipped: {md(h.get('reason', ''))}", ""]
    caption, form_rows = tables.form_rows(r)
    if form_rows:
        out += [md(caption) + ":", "", _table(tables.FORM_HEADER, [[md(c) for c in row] for row in form_rows])]

    out += ["## Excluded runs", ""]
    if page.exclusions:
        shown = page.exclusions[:MAX_EXCLUDED_ROWS]
        out += [_table(["trial", "reason", "excluded from"],
                       [[md(x["trial_id"]), md(x["reason"]), md(x["methods"])] for x in shown])]
        if len(page.exclusions) > len(shown):
            out += [f"{len(page.exclusions) - len(shown)} more in fit.json.", ""]
    else:
        out += ["No run was excluded.", ""]

    out += ["## Sweep cost and failures", ""]
    c = page.cost
    if c is None:
        out += ["Not a sweep run by the orchestrator (a CSV of runs): no cost or failures recorded.", ""]
    else:
        out += [f"- trials: {c['n_trials']} ({c['n_finished']} finished, {c['retried']} retried)",
                f"- training FLOPs (finished runs): {sci(c['flops'])}",
                f"- wall time (sum over trials): {hours(c['wall_s'])}",
                f"- device time (wall time x devices per trial): {hours(c['device_hours'] * 3600)} "
                f"({hours(c['gpu_hours'] * 3600)} on GPUs, {hours(c['cpu_core_hours'] * 3600)} on CPU cores)",
                "- failures by kind: " + (", ".join(f"{md(k)}: {v}" for k, v in c["failures"].items()) or "none"), ""]

    prov = r.provenance
    code = prov.get("code", {})
    out += ["## Provenance", "", f"- source: {md(page.source)}",
            f"- runs in input: {prov.get('n_input_runs', MISSING)}; fitted: {r.n_runs}",
            "- conventions: " + md(", ".join(f"{k}={v}" for k, v in r.conventions.items())),
            f"- code: scaling-orchestrator {md(code.get('package') or MISSING)}, "
            f"git {md(code.get('git_commit') or MISSING)}",
            f"- fit time: {hours(prov.get('seconds'))}; bootstrap seed {prov.get('seed', MISSING)}"]
    if page.sweep:
        out.append(f"- sweep plan: {md(json.dumps(page.sweep, default=str))}")
    if page.floors:
        out.append("- entropy floor: " + ", ".join(f"{md(k)}: {v:.4g} nats/token" for k, v in page.floors.items()))
    out += ["", "Files: " + ", ".join(f"`{k}` ({v})" for k, v in page.files.items()), ""]
    return "\n".join(out)
