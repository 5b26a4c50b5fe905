"""The comparison report's two pages from one `Content` (compare/report.py): index.html and report.md.

index.html works offline like the frontier report (orchestrator/report/html.py, whose style sheet it reuses):
figures are PNG data URIs, the style sheet is inline, there is no script, no web font and nothing loaded from a
network. Every string passes through `html.escape` (HTML) or the frontier report's `md` (Markdown) before it
reaches a page, so a sweep name or a CSV path cannot inject markup or break a table.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html import escape

from orchestrator.report.html import CSS
from orchestrator.report.markdown import md
from orchestrator.report.page import Figure

@dataclass(frozen=True)
class Table:
    """Plain-text cells; the first `left` columns are left-aligned."""

    id: str
    title: str
    header: list[str]
    rows: list[list[str]]
    left: int = 1
    note: str = ""


@dataclass(frozen=True)
class Content:
    title: str
    meta: str
    headline: list[str]
    checks: Table
    warnings: list[str]
    figures: list[Figure]
    tables: list[Table]
    sweeps: Table
    provenance: list[tuple[str, str]]
    options: str
    files: dict[str, str] = field(default_factory=dict)


SECTIONS = (("headline", "Headline"), ("checks", "Checks"), ("warnings", "Warnings"), ("figures", "Figures"),
            ("multiplier", "M(C) at every budget"), ("sweeps", "Compared sweeps"), ("provenance", "Provenance"))


def html(page: Content) -> str:
    body = {"headline": '<div class="lead">' + "".join(f"<p>{escape(s)}</p>" for s in page.headline) + "</div>",
            "checks": _html_table(page.checks),
            "warnings": ('<ul class="warn">' + "".join(f"<li>{escape(w)}</li>" for w in page.warnings) + "</ul>"
                         if page.warnings else "<p>None.</p>"),
            "figures": "".join(_html_figure(f) for f in page.figures),
            "multiplier": "".join(_html_table(t) for t in page.tables),
            "sweeps": _html_table(page.sweeps),
            "provenance": ("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in page.provenance)
                           + "</dl><h3>Files beside this page</h3><ul>"
                           + "".join(f"<li><code>{escape(k)}</code>: {escape(v)}</li>" for k, v in page.files.items())
                           + "".join(f"<li><code>{escape(f.name)}.png</code>: {escape(f.title)}</li>"
                                     for f in page.figures if f.path)
                           + f"</ul><h3>Options</h3><pre>{escape(page.options)}</pre>")}
    nav = "".join(f'<a href="#{sid}">{title}</a>' for sid, title in SECTIONS)
    sections = "".join(f'<section id="{sid}"><h2>{title}</h2>{body[sid]}</section>' for sid, title in SECTIONS)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(page.title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{escape(page.title)}</h1><p class=\"meta\">{escape(page.meta)}</p><nav>{nav}</nav>"
            f"{sections}</main></body></html>\n")


def _html_table(t: Table) -> str:
    head = "".join(f'<th class="{"l" if i < t.left else ""}">{escape(h)}</th>' for i, h in enumerate(t.header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < t.left else ""}">{escape(v)}</td>'
                                    for i, v in enumerate(row)) + "</tr>" for row in t.rows)
    title = f"<h3>{escape(t.title)}</h3>" if t.title else ""
    note = f'<p class="meta">{escape(t.note)}</p>' if t.note else ""
    return f'{title}<table id="{escape(t.id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}'


def _html_figure(f: Figure) -> str:
    if f.path is None:
        return (f'<figure id="fig-{escape(f.name)}"><figcaption><b>{escape(f.title)}</b>: '
                f'<span class="missing">not drawn: {escape(f.missing)}</span></figcaption></figure>')
    data = base64.b64encode(f.path.read_bytes()).decode("ascii")
    return (f'<figure id="fig-{escape(f.name)}"><img alt="{escape(f.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{escape(f.title)}.</b> {escape(f.caption)}</figcaption></figure>")


def markdown(page: Content) -> str:
    out = [f"# {md(page.title)}", "", md(page.meta), ""]
    for sid, title in SECTIONS:
        out += [f"## {title}", ""]
        if sid == "headline":
            out += [f"- {md(s)}" for s in page.headline] + [""]
        elif sid == "checks":
            out.append(_md_table(page.checks))
        elif sid == "warnings":
            out += ([f"- {md(w)}" for w in page.warnings] or ["None."]) + [""]
        elif sid == "figures":
            for f in page.figures:
                out += ([f"**{md(f.title)}**: not drawn: {md(f.missing)}", ""] if f.path is None else
                        [f"### {md(f.title)}", "", f"![{md(f.title)}]({f.path.name})", "", md(f.caption), ""])
        elif sid == "multiplier":
            out += [_md_table(t) for t in page.tables]
        elif sid == "sweeps":
            out.append(_md_table(page.sweeps))
        else:
            out += [f"- {md(k)}: {md(v)}" for k, v in page.provenance] + [""]
            out += ["Files: " + ", ".join(f"`{k}` ({md(v)})" for k, v in page.files.items()), "",
                    f"Options: {md(page.options)}", ""]
    return "\n".join(out)


def _md_table(t: Table) -> str:
    lines = ([f"### {md(t.title)}", ""] if t.title else []) + [
        "| " + " | ".join(md(h) for h in t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in t.rows]
    return "\n".join(lines) + "\n" + (f"\n{md(t.note)}\n" if t.note else "")
