"""Frontier reports: a fit as a self-contained HTML page, Markdown, CSV, JSON and PNG figures.

Modules (one job each):
- write.py     write_report: rebuild the fitted runs table, write every file, return their paths
- tables.py    the numbers: frontier.csv rows, exponents, hold-out, exclusions, warnings, sweep cost
- derived.py   curves the figures need that fit.json does not store (parabolas, frontier lines, CI bands)
- figures/     the PNG figures (the only package that imports matplotlib): base.py (inputs, axes, colours),
               frontier.py (the answer), data.py (what the fit saw), checks.py (residuals, hold-out)
- page.py      Page (the report's content, shared by both pages) and the headline sentences
- html.py      index.html: self-contained, figures as data URIs, every user string escaped
- markdown.py  report.md
- text.py      number formatting shared by the pages
"""

from orchestrator.report.write import write_report

__all__ = ["write_report"]
