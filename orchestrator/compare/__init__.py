"""Comparing sweeps: the effective compute multiplier M(C) of each variant over a baseline, with intervals.

Modules (one job each):
- options.py   CompareConfig (the `compare:` node): baseline, variants, target budgets, method, joint_E, bootstrap
- sources.py   where a compared sweep's runs come from (the tracking store or a CSV), and why a name is unusable
- fits.py      each sweep fitted by one method (the fitting stage's estimators): SweepFit, the method choice
- frontier.py  L_opt(C) vectorised over parameter sets, and its inverse C(L) (Newton in ln C)
- multiplier.py M(C), matched-N and matched-D multipliers, verdicts, trend, crossings (pure maths)
- bootstrap.py each sweep resampled independently with the point fit's resampler and estimator; percentiles
- joint.py     the joint fit of every sweep with one shared irreducible loss E
- analysis.py  the comparison from fitted sweeps to compare.json's content (pure)
- report.py    the report's content and files; pages.py renders index.html and report.md
- track.py     reading stored sweeps and logging the comparison as its own MLflow run
- run.py       the stage: action=compare
"""
