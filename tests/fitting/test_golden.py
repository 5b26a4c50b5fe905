"""The golden fit.json: a fixed runs table through the fitting stage's entry gives the committed fit.json.

tests/fitting/golden/runs.csv holds 35 runs from a planted law (Hoffmann et al. 2022's E, A, B, alpha, beta;
5 IsoFLOP budgets 1e18..1e20, 7 sizes each over N_opt/6..6 N_opt, D = C / (6 N), 0.5% log-normal noise, numpy
seed 23, rounded to 6 significant digits). `run_fit` (what action=fit and action=report call) fits it with every
method, a known floor (so parametric_floor and the floor check run), one law form, the hold-out and 6 bootstrap
resamples (fixed seed): every key of fit.json is written, in a few seconds.

The written fit.json must have exactly the golden's keys, at every depth, and its numbers within rtol 1e-6. Why
1e-6: the fit is deterministic (fixed grid of starts, fixed resampling seed), so on one machine the numbers
repeat bit for bit; across numpy/BLAS builds and CPUs the order of floating-point sums changes the last bits,
and the Newton iterations carry those 1e-15 differences into the fitted parameters at about 1e-10 to 1e-8.
A change of method (another objective, start, bound or resample) moves them by 1e-4 or more, so 1e-6 fails on
every change of behaviour and on none of rounding (with an absolute 1e-10 for quantities near zero, such as a
regret of 1e-7 computed as a difference of losses). Values that differ between runs by design (timings, paths,
the code's version) or between builds of numpy and scipy without a change of result (the optimisers' gradient
norms at convergence and iteration counts: 55 Newton iterations against 33 with scipy 1.17.1 and numpy 2.4.6,
the same fit to 1e-8) are replaced by a placeholder before comparing; their keys are still compared.

A change that is meant to change fit.json regenerates it: SO_REGEN_GOLDEN=1 pytest tests/fitting/test_golden.py
(then review the diff of tests/fitting/golden/fit.json: it is the change in output).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from orchestrator.fitting.options import FitConfig
from orchestrator.fitting.result import CheckStatus, MethodStatus, read_fit, write_fit
from orchestrator.fitting.run import run_fit

GOLDEN = Path(__file__).resolve().parent / "golden"
RTOL = 1e-6
ATOL = 1e-10  # quantities that are differences of near-equal numbers (a regret of 1e-7) keep fewer digits
OPTIMISER_PATH = ("grad_norm", "newton_iterations", "polish_iterations", "iterations")
"""How the optimiser got there, not where: a gradient of 1e-11 against 1e-13 and 55 iterations against 33 are
the same converged fit under another numpy/scipy build (their keys are still compared)."""
VOLATILE = "<volatile>"


def golden_options(runs_csv: Path, out_dir: Path) -> FitConfig:
    return FitConfig(runs_csv=str(runs_csv), floor=1.69, bootstrap=6, seed=0, forms=["chinchilla"],
                     out_dir=str(out_dir))


def normalised(node: object, *, key: str = "") -> object:
    """fit.json with the values that change from run to run by design (seconds, paths, code version) replaced."""
    if key in ("seconds", "code", "runs_csv", "out_dir") or key in OPTIMISER_PATH:
        return VOLATILE
    if isinstance(node, dict):
        return {k: normalised(v, key=k) for k, v in node.items()}
    if isinstance(node, list):
        return [normalised(v) for v in node]
    return node


def differences(got: object, want: object, *, path: str = "") -> list[str]:
    """Where `got` departs from `want`: keys added or missing, types, lengths, strings, numbers beyond RTOL."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}/{k}: missing" for k in want if k not in got]
        out += [f"{path}/{k}: not in the golden" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(got[k], want[k], path=f"{path}/{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items, the golden has {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, path=f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(want, numbers) and isinstance(got, numbers) and not isinstance(want, bool) \
            and not isinstance(got, bool):
        if math.isclose(got, want, rel_tol=RTOL, abs_tol=ATOL) or got == want:
            return []
        return [f"{path}: {got!r}, the golden has {want!r}"]
    return [] if got == want and type(got) is type(want) else [f"{path}: {got!r}, the golden has {want!r}"]


def test_fit_json_matches_the_golden(tmp_path):
    runs_csv = tmp_path / "golden_runs.csv"
    shutil.copyfile(GOLDEN / "runs.csv", runs_csv)
    report = run_fit(golden_options(runs_csv, tmp_path / "reports"))
    got = normalised(json.loads(report.json_path.read_text()))
    golden = GOLDEN / "fit.json"
    if os.environ.get("SO_REGEN_GOLDEN") == "1":
        golden.write_text(json.dumps(got, indent=2) + "\n")
    want = json.loads(golden.read_text())
    diff = differences(got, want)
    assert not diff, f"fit.json departs from {golden} in {len(diff)} places:\n" + "\n".join(diff[:40])
    # The golden is a real fit, not an empty shell: every method ran and the planted exponent is recovered.
    assert all(want[m]["status"] == "ok" for m in want["method_order"])
    assert abs(want["parametric"]["a"] - 0.28 / (0.34 + 0.28)) < 0.05


def test_a_changed_number_is_caught(tmp_path):
    """The comparison itself: a number moved by 1e-5 relative, a missing key and an added one are all reported."""
    want = {"a": 0.5, "ci": {"a": [0.4, 0.6]}, "status": "ok"}
    assert differences({"a": 0.5 * (1 + 1e-7), "ci": {"a": [0.4, 0.6]}, "status": "ok"}, want) == []
    assert differences({"a": 0.5 * (1 + 1e-5), "ci": {"a": [0.4, 0.6]}, "status": "ok"}, want) == \
        ["/a: 0.500005, the golden has 0.5"]
    assert differences({"a": 0.5, "ci": {}, "status": "ok", "b": 1}, want) == ["/b: not in the golden",
                                                                              "/ci/a: missing"]


def test_read_fit_gives_back_what_was_written(tmp_path):
    """fit.json read into a FitResult and written again is the same file: result.py knows every key."""
    runs_csv = tmp_path / "golden_runs.csv"
    shutil.copyfile(GOLDEN / "runs.csv", runs_csv)
    report = run_fit(golden_options(runs_csv, tmp_path / "reports"))
    back = read_fit(report.json_path)
    assert back.method_order == report.fit.method_order and back.headline_method == report.fit.headline_method
    assert all(isinstance(c.status, CheckStatus) for c in back.checks)
    assert back.methods["parametric"].status is MethodStatus.OK and back.methods["parametric"].ci is not None
    rewritten = write_fit(back, tmp_path / "again.json")
    assert rewritten.read_text() == report.json_path.read_text()
