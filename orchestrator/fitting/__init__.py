"""Fitting stage: from a sweep's runs to compute-optimal frontiers with uncertainty.

Modules (one job each):
- options.py    FitConfig, the `fit:` config node (ColumnMap: CSV column names)
- errors.py     FitInputError (bad input, exit 2) and FitError (a fit that failed)
- table.py      the tidy runs table: CSV/sweep schemas, conventions, exclusions, IsoFLOP budget grouping
- optim.py      batched damped Newton over many starts (numpy)
- surface.py    approach 3: L = E + A/N^alpha + B/D^beta, log-space Huber, 4500-start grid; batched resamples
- vpnls.py      cross-check: variable projection over (alpha, beta) with exact NNLS for (E, A, B)
- isoflop.py    approach 2: parabolas per budget, power laws through the minima
- envelope.py   approach 1: envelope of valid training-curve points
- powerlaw.py   power laws in log-log space; approach 5 (Kaplan-style L(N), L(D))
- bootstrap.py  resampling runs, percentile intervals for every method
- frontier.py   predictions at target budgets, method agreement, the hold-out's scoring
- holdout.py    leave-largest-budget-out: each method refitted (its registry `refit`) without the largest budget
- methods.py    the registry of methods: name, label, colour, kind, point fit and bootstrap of each
- result.py     FitResult, MethodResult, Check and their status enums; fit.json written and read (write_fit, read_fit)
- run.py        run_fit (fits every method, builds the FitResult, writes it) and format_summary (the printed table)
"""

from orchestrator.fitting.errors import FitError, FitInputError
from orchestrator.fitting.options import ColumnMap, FitConfig

__all__ = ["ColumnMap", "FitConfig", "FitError", "FitInputError"]
