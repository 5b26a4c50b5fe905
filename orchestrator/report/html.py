"""index.html: the report as one self-contained page.

Works offline and from an e-mail attachment: the figures are PNG data URIs, the style sheet is inline, there
is no script and no web font (system font stack), and no element loads anything from a network. Every
string that came from the user or the data (sweep, run and column names, file paths, reasons) passes
through `html.escape` before it reaches the page.
"""

from __future__ import annotations

import base64
import json
from html import escape

from orchestrator.report.page import Page, headline
from orchestrator.report import tables
from orchestrator.fitting import methods as registry
from orchestrator.report.tables import QUANTITIES, bounds
from orchestrator.report.text import MISSING, count, extrapolation, hours, interval, num, sci

MAX_EXCLUDED_ROWS = 500  # beyond this the page lists counts by reason; fit.json keeps every exclusion

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;color:#1d2330;
background:#fafbfc;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:1.5rem 2rem 4rem}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.25rem;border-bottom:1px solid #d5dae1;padding-bottom:.25rem;
margin-top:2.2rem}h3{font-size:1.05rem;margin-top:1.4rem}
.meta{color:#555;font-size:.9rem}nav a{margin-right:1rem;font-size:.9rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem;background:#fff}
th,td{border:1px solid #d5dae1;padding:.3rem .55rem;text-align:right;vertical-align:top}
th{background:#eef1f5}td.l,th.l{text-align:left}
tr.primary td{font-weight:600}tr.beyond td{background:#fff8e6}
.ci{color:#5b6472;font-weight:400;font-size:.8rem;display:block}
.lead{font-size:1.02rem;background:#fff;border-left:4px solid #1f77b4;padding:.6rem 1rem;margin:.8rem 0}
.lead p{margin:.35rem 0}
ul.warn li{margin:.2rem 0}ul.warn{background:#fff6f4;border-left:4px solid #d62728;padding:.6rem 1rem .6rem 2rem}
figure{margin:1.2rem 0;background:#fff;border:1px solid #d5dae1;padding:.8rem}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:.86rem;color:#333;margin-top:.4rem}
.missing{color:#a33}pre{background:#f1f3f6;padding:.6rem;white-space:pre-wrap;font-size:.8rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;font-size:.9rem}dt{font-weight:600}dd{margin:0}
"""


def render(page: Page, *, seconds: float | None = None) -> str:
    """The whole page; `seconds` is the report's own generation time, shown in the provenance."""
    r = page.result
    n_excl = len(r.excluded)
    meta = (f"{escape(page.source)} \u00b7 {r.n_runs} runs fitted"
            + (f", {n_excl} excluded" if n_excl else "") + f" \u00b7 generated {escape(page.generated)}")
    sections = [
        ("headline", "Headline", _headline(page)),
        ("checks", "Checks", _checks(page)),
        ("warnings", "Warnings", _warnings(page)),
        ("figures", "Figures", _figures(page)),
        ("methods", "Methods compared", _methods(page)),
        ("excluded", "Excluded runs", _excluded(page)),
        ("cost", "Sweep cost and failures", _cost(page)),
        ("provenance", "Provenance", _provenance(page, seconds=seconds)),
    ]
    nav = "".join(f'<a href="#{sid}">{title}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{title}</h2>{content}</section>' for sid, title, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Frontier report: {escape(page.name)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>Compute-optimal frontier: {escape(page.name)}</h1><p class=\"meta\">{meta}</p><nav>{nav}</nav>"
            f"{body}</main></body></html>\n")


def _table(header: list[str], rows: list[list[str]], *, id_: str = "", left: int = 1,
           row_classes: list[str] | None = None) -> str:
    """A table of already-escaped cells; the first `left` columns are left-aligned."""
    cls = row_classes or [""] * len(rows)
    head = "".join(f'<th class="{"l" if i < left else ""}">{h}</th>' for i, h in enumerate(header))
    body = "".join(f'<tr class="{c}">' + "".join(f'<td class="{"l" if i < left else ""}">{v}</td>'
                                                  for i, v in enumerate(row)) + "</tr>" for row, c in zip(rows, cls))
    ident = f' id="{id_}"' if id_ else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _value_ci(value: float | None, ci: tuple[float, float] | None, *, fmt=num) -> str:
    text = interval(ci, fmt=fmt)
    return escape(fmt(value)) + (f'<span class="ci">{escape(text)}</span>' if text else "")


def _checks(page: Page) -> str:
    """Each check of fitting/checks.py: its outcome, what it measured, and the fix when it failed."""
    checks = page.result.checks
    if not checks:
        return "<p>No checks were recorded in fit.json.</p>"
    label = {"pass": "pass", "fail": "FAIL", "skipped": "not run", "warn": "warning"}
    rows = [[escape(label[c.status]), escape(c.title), escape(c.detail), escape(c.fix or "")] for c in checks]
    return _table(["outcome", "check", "measured", "to fix"], rows, id_="checks-table", left=4)


def _headline(page: Page) -> str:
    lead = "".join(f"<p>{escape(s)}</p>" for s in headline(page))
    out = f'<div class="lead">{lead}</div>'
    if page.primary is not None:
        e = page.result.methods[page.primary]
        rows, classes = [], []
        for key, p in sorted(e.predictions.items(), key=lambda kv: kv[1]["C"]):
            fmts = {"N_opt": count, "D_opt": count, "tokens_per_param": lambda x: num(x, digits=3), "loss": num}
            rows.append([escape(sci(p["C"])), escape(extrapolation(p["C"], swept=page.swept))]
                        + [_value_ci(p[q], bounds(e, q, budget=key), fmt=fmts[q]) for q in QUANTITIES])
            classes.append("beyond" if p["C"] > page.swept[1] * 1.01 else "")
        out += (f"<h3>Recommendations at the target budgets ({escape(page.primary)}; {escape(page.level_text())})</h3>"
                + _table(["C (FLOPs)", "vs swept budgets", "N_opt (parameters)", "D_opt (tokens)",
                          "tokens per parameter", "predicted loss"], rows, id_="headline-table", left=2,
                         row_classes=classes))
    rows, classes = [], []
    for x in page.exponents:
        if x["status"] != "ok":
            rows.append([escape(x["method"]), escape(x["status"])] + [MISSING] * 5 + [escape(x["reason"])])
        else:
            valid = f"{x['n_valid']}/{x['n_resamples']}" if x["n_resamples"] else MISSING
            rows.append([escape(x["method"]), "ok"] + [_value_ci(x[q], x[f"{q}_ci"], fmt=lambda v: num(v, digits=3))
                                                       for q in ("a", "b", "E", "alpha", "beta")]
                        + [escape(f"{x['n_points'] or MISSING} points; resamples fitted {valid}")])
        classes.append("primary" if x["method"] == page.primary else "")
    out += ("<h3>Compute-optimal exponents per method (N_opt \u221d C^a, D_opt \u221d C^b)</h3>"
            + _table(["method", "status", "a", "b", "E", "alpha", "beta", "notes"], rows, id_="exponents", left=2,
                     row_classes=classes)
            + "<p class=\"meta\">E for isoflop and envelope is the floor of their L_opt(C) law, not a surface fit; "
              "powerlaw's alpha and beta are Kaplan-style single-variable exponents.</p>")
    return out


def _warnings(page: Page) -> str:
    if not page.warnings:
        return "<p>None: every method fitted, converged and passed the hold-out check.</p>"
    return '<ul class="warn">' + "".join(f"<li>{escape(w)}</li>" for w in page.warnings) + "</ul>"


def _figures(page: Page) -> str:
    out = []
    for f in page.figures:
        if f.path is None:
            out.append(f'<figure id="fig-{escape(f.name)}"><figcaption><b>{escape(f.title)}</b>: '
                       f'<span class="missing">not drawn: {escape(f.missing)}</span></figcaption></figure>')
            continue
        data = base64.b64encode(f.path.read_bytes()).decode("ascii")
        out.append(f'<figure id="fig-{escape(f.name)}"><img alt="{escape(f.title)}" '
                   f'src="data:image/png;base64,{data}"><figcaption><b>{escape(f.title)}.</b> '
                   f"{escape(f.caption)}</figcaption></figure>")
    return "".join(out)


def _methods(page: Page) -> str:
    fr = page.frontier
    out = ""
    if not fr.empty:
        methods = [m for m in page.result.method_order if m in set(fr["method"])]
        rows = []
        for C, at in fr.groupby("C", sort=True):
            by = {row["method"]: row for _, row in at.iterrows()}
            cells = [escape(sci(C))]
            for q, fmt in (("N_opt", count), ("D_opt", count), ("loss", num)):
                cells += [_value_ci(by[m][q], (by[m][f"{q}_lo"], by[m][f"{q}_hi"]), fmt=fmt) if m in by else MISSING
                          for m in methods]
            rows.append(cells)
        header = ["C (FLOPs)"] + [f"{q}<br>{escape(m)}" for q in ("N_opt", "D_opt", "loss") for m in methods]
        out += "<h3>Predictions at the target budgets, every method</h3>" + _table(header, rows, id_="comparison")
    vp = page.result.method("vpnls")
    vs = vp.vs_parametric if vp is not None else None
    if vs:
        rows = []
        for q, v in vs["quantities"].items():
            fmt = count if q.startswith("N_opt") else num
            ratio = v.get("ratio", v.get("rel_diff", float("nan")) + 1)
            rows.append([escape(q), escape(fmt(v["reference"])), escape(fmt(v["other"])),
                         escape(num(ratio)) + (" \u2190 disagree" if q in vs["disagree"] else "")])
        out += ("<h3>Parametric fit against its VPNLS cross-check</h3>"
                + _table(["quantity", "parametric", "vpnls", "vpnls / parametric"], rows, id_="vs-parametric"))
    h = page.result.holdout or {}
    if page.holdout:
        obs = h["observed"]
        rows = [[escape(x["method"])] + ([escape(num(x["predicted_best_loss"])), escape(f"{x['loss_rel_error']:+.2%}"),
                                           escape(count(x["predicted_N_opt"])), escape(f"{x['N_opt_ratio']:.3g}")]
                                          if x["status"] == "ok" else [escape(x.get("reason", x["status"]))] + [""] * 3)
                for x in page.holdout]
        out += (f"<h3>Leave-largest-budget-out (held out C = {escape(sci(h['budget']))}: observed best loss "
                f"{escape(num(obs['best_loss']))}, N_opt {escape(count(obs['N_opt']))} from the "
                f"{escape(obs['N_opt_source'])})</h3>"
                + _table(["method", "predicted best loss", "loss error", "predicted N_opt", "N_opt ratio"], rows,
                         id_="holdout"))
    elif h:
        out += f"<p>Leave-largest-budget-out skipped: {escape(h.get('reason', ''))}</p>"
    caption, form_rows = tables.form_rows(page.result)
    if form_rows:
        out += (f"<h3>{escape(caption)}</h3>"
                + _table(tables.FORM_HEADER, [[escape(c) for c in row] for row in form_rows], id_="forms", left=5))
    labels = "".join(f"<li><b>{escape(m)}</b>: {escape(registry.label(m))}</li>"
                     for m in page.result.method_order)
    return out + f"<h3>Methods</h3><ul>{labels}</ul>"


def _excluded(page: Page) -> str:
    rows = page.exclusions
    iso = page.result.method("isoflop")
    skipped = iso.skipped_budgets if iso is not None else []
    out = ""
    if not rows:
        out += "<p>No run was excluded.</p>"
    else:
        shown = rows[:MAX_EXCLUDED_ROWS]
        out += _table(["trial", "reason", "excluded from"],
                      [[escape(x["trial_id"]), escape(x["reason"]), escape(x["methods"])] for x in shown],
                      id_="excluded-table", left=3)
        if len(rows) > len(shown):
            out += f"<p>{len(rows) - len(shown)} more in fit.json.</p>"
    if skipped:
        out += ("<h3>IsoFLOP budgets not used</h3>"
                + _table(["budget", "reason"], [[escape(sci(s["budget"])), escape(s["reason"])] for s in skipped],
                         left=2))
    return out


def _cost(page: Page) -> str:
    c = page.cost
    if c is None:
        return "<p>Not a sweep run by the orchestrator (a CSV of runs): no cost or failures recorded.</p>"
    rows = [["trials", f"{c['n_trials']} ({c['n_finished']} finished, {c['retried']} retried)"],
            ["training FLOPs (finished runs)", escape(sci(c["flops"]))],
            ["wall time (sum over trials)", escape(hours(c["wall_s"]))],
            ["device time (wall time x devices per trial)", escape(
                f"{hours(c['device_hours'] * 3600)} ({hours(c['gpu_hours'] * 3600)} on GPUs, "
                f"{hours(c['cpu_core_hours'] * 3600)} on CPU cores)")],
            ["devices", escape(", ".join(f"{k}: {v} runs" for k, v in c["devices"].items()))]]
    out = _table(["quantity", "value"], rows, id_="cost-table", left=2)
    if c["failures"]:
        reasons = c.get("failure_reasons", {})
        out += "<h3>Failures by kind</h3>" + _table(
            ["status", "trials", "example reason"],
            [[escape(k), str(v), escape(reasons.get(k, ""))] for k, v in c["failures"].items()], id_="failures",
            left=1)
    else:
        out += "<p>No failed trials.</p>"
    return out


def _provenance(page: Page, *, seconds: float | None) -> str:
    prov = page.result.provenance
    code, budgets = prov.get("code", {}), page.result.budgets
    items = [("source", page.source), ("runs in input", str(prov.get("n_input_runs", MISSING))),
             ("runs fitted", str(page.result.n_runs)),
             ("conventions", ", ".join(f"{k}={v}" for k, v in page.result.conventions.items())),
             ("IsoFLOP budgets", f"{len(budgets['values'])} found by {budgets['grouping']}"),
             ("code", f"scaling-orchestrator {code.get('package') or MISSING}, "
                      f"git {code.get('git_commit') or MISSING}"),
             ("bootstrap seed", str(prov.get("seed", MISSING))),
             ("fit time", hours(prov.get("seconds"))), ("report time", hours(seconds))]
    if page.sweep:
        items.insert(1, ("sweep plan", json.dumps(page.sweep, default=str)))
    if page.floors:
        items.append(("entropy floor", ", ".join(f"{k}: {v:.4g} nats/token" for k, v in page.floors.items())))
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    files = "".join(f"<li><code>{escape(k)}</code>: {escape(v)}</li>" for k, v in page.files.items())
    figs = "".join(f"<li><code>{escape(f.name)}.png</code>: {escape(f.title)}</li>" for f in page.figures if f.path)
    options = json.dumps(prov.get("options", {}), default=str)
    return (f"<dl>{dl}</dl><h3>Files beside this page</h3><ul>{files}{figs}</ul>"
            f"<h3>Fit options</h3><pre>{escape(options)}</pre>")
