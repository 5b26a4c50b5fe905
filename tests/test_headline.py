"""The answer in the terminal (orchestrator/headline.py) and fixes that paste (fitting/command_line.py): a good and
a failing fit of runs from a known law, their 3-6 line headlines, the failing report's text (no "nan", every fix
the user's own command line), and the real CLI ending action=report with the headline."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchestrator.fitting.command_line import CommandLine
from orchestrator.fitting.options import FitConfig
from orchestrator.fitting.run import run_fit
from orchestrator.headline import terminal_headline

REPO = Path(__file__).resolve().parents[1]
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28  # Hoffmann et al. 2022's fitted law
NAN = re.compile(r"\bnan\b|C\^\u2013|\u2013x\b|nanx|[+-]nan%", re.IGNORECASE)
USER = ("--config-dir", "conf", "sweep=mine", "data=corpus", "model.n_head=4", "action=report")


def law_runs(*, lo: float, hi: float, sizes: int, seed: int = 0) -> pd.DataFrame:
    """IsoFLOP runs of the law at 4 budgets, sizes from lo to hi times each budget's true N_opt (0.5% noise)."""
    rng = np.random.default_rng(seed)
    G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    rows = []
    for C in (1e18, 1e19, 1e20, 1e21):
        centre = G * (C / 6) ** (BETA / (ALPHA + BETA))
        for N in np.geomspace(centre * lo, centre * hi, sizes):
            D = C / (6 * N)
            rows.append({"n_params": N, "tokens": D, "flops": C,
                         "loss": (E + A / N ** ALPHA + B / D ** BETA) * np.exp(rng.normal(0, 0.005))})
    return pd.DataFrame(rows)


def fit_csv(tmp_path: Path, runs: pd.DataFrame, *, name: str, command: CommandLine | None = None):
    path = tmp_path / f"{name}.csv"
    runs.to_csv(path, index=False)
    return run_fit(FitConfig(runs_csv=str(path), bootstrap=40, out_dir=str(tmp_path / "reports")), command=command)


def sweep_command(**settings: str) -> CommandLine:
    """A user's own project command line (their --config-dir and overrides) with the values in effect."""
    return CommandLine(program="orchestrator", args=USER, settings={"fit.runs_csv": "null", **settings})


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return fit_csv(tmp_path_factory.mktemp("good"), law_runs(lo=1 / 6, hi=6, sizes=7), name="good")


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    # Every budget's sizes lie above its true N_opt: no minimum is bracketed, the checks must fail.
    return fit_csv(tmp_path_factory.mktemp("bad"), law_runs(lo=1.5, hi=12, sizes=5), name="bad",
                   command=sweep_command(**{"adaptive.enabled": "false", "sweep.span": "8.0"}))


def test_a_good_fit_ends_with_its_verdict_and_allocation_inside_its_intervals(good):
    lines = terminal_headline(good.fit, name="good")
    assert 3 <= len(lines) <= 6
    passed = [c for c in good.result["checks"] if c["status"] == "pass"]
    assert len(passed) >= 4 and not any(c["status"] == "fail" for c in good.result["checks"])
    # The target 1e23 lies 2 decades past the swept budgets: a warning qualifies the verdict, on its own line.
    assert lines[0] == f"good: the frontier passes all {len(passed)} checks it could run (1 warning below)."
    assert any(line.startswith("  WARNING targets within 1 decade") for line in lines)
    alloc = lines[1]
    assert alloc.startswith("At C = 1e23 FLOPs, 2.0 decades above the swept budgets: train N = ")
    # Every number with an interval lies inside it (none flagged), and the law's exponent is inside a's interval.
    assert "Outside its own interval" not in alloc
    a, lo, hi = map(float, re.search(r"C\^([\d.]+) \[([\d.]+), ([\d.]+)\]", alloc).groups())
    assert lo <= a <= hi and lo <= BETA / (ALPHA + BETA) <= hi
    assert not any(NAN.search(line) for line in lines)


def test_a_failing_fit_names_each_failed_check_on_its_own_line_with_a_pasteable_fix(failing):
    lines = terminal_headline(failing.fit, name="bad")
    assert 3 <= len(lines) <= 6 and lines[0].startswith("bad: NOT YET TRUSTWORTHY: ")
    fails = [line for line in lines if line.startswith("  FAIL ")]
    failed = [c for c in failing.result["checks"] if c["status"] == "fail"]
    assert len(fails) == len(failed) >= 1
    bracket = next(line for line in fails if "minima bracketed" in line)
    fix = shlex.split(bracket.split("fix: ", 1)[1].split(" (")[0])
    # The user's command line: their program, --config-dir and overrides, minus action=, plus the change.
    assert fix == ["orchestrator", *[a for a in USER if a != "action=report"], "adaptive.enabled=true"]
    assert not any(NAN.search(line) for line in lines)


def test_a_fix_already_in_effect_is_never_suggested(tmp_path):
    # Adaptive placement already on (and stopped): the fix widens the span instead, and an override the user gave
    # for the same key is replaced, not repeated (the CLI refuses a key given twice).
    command = CommandLine(program="orchestrator", args=(*USER, "sweep.span=8"),
                          settings={"fit.runs_csv": "null", "adaptive.enabled": "true", "sweep.span": "8.0"})
    fit = fit_csv(tmp_path, law_runs(lo=1.5, hi=12, sizes=5), name="bad", command=command)
    bracket = next(c for c in fit.result["checks"] if c["name"] == "bracketed")
    assert bracket["status"] == "fail"
    assert "adaptive.enabled=true" not in bracket["fix"]
    assert shlex.split(bracket["fix"].split(" (")[0]) == [
        "orchestrator", "--config-dir", "conf", "sweep=mine", "data=corpus", "model.n_head=4", "sweep.span=16"]
    assert command.with_("adaptive.enabled=true") is None


def test_a_failing_fits_report_has_no_nan_and_its_fixes_carry_the_users_command(failing, tmp_path):
    from orchestrator.report import write_report

    files = write_report(failing, runs=None, curves=None, out_dir=tmp_path)
    # The pages' words (figures are inlined as base64, whose letters can spell anything).
    text = {p.name: re.sub(r"base64,[A-Za-z0-9+/=]+", "", p.read_text()) for p in files if p.suffix in (".md", ".html")}
    for name, page in text.items():
        assert not NAN.search(page), (name, NAN.search(page))
    md = text["report.md"]
    bracket = [line for line in md.splitlines() if line.startswith("- Failed: IsoFLOP minima bracketed")]
    assert len(bracket) == 1
    assert "Fix: orchestrator --config-dir conf sweep=mine data=corpus model.n_head=4 adaptive.enabled=true" in bracket[0]
    assert "action=report" not in bracket[0]


def test_the_cli_ends_action_report_with_the_headline_and_the_users_own_fix(tmp_path):
    (tmp_path / "conf" / "sweep").mkdir(parents=True)
    (tmp_path / "conf" / "sweep" / "mine.yaml").write_text("# @package _global_\nsweep:\n  name: mine\n")
    csv = tmp_path / "bad.csv"
    law_runs(lo=1.5, hi=12, sizes=5).to_csv(csv, index=False)
    args = ["--config-dir", "conf", "sweep=mine", "model.n_head=4", "action=report", f"fit.runs_csv={csv}",
            "fit.bootstrap=30"]
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    tail = proc.stdout.strip().splitlines()
    start = next(i for i, line in enumerate(tail) if line.startswith("bad: "))
    headline = tail[start:]
    assert 3 <= len(headline) <= 6 and headline[0].startswith("bad: NOT YET TRUSTWORTHY")
    assert any(line.startswith("  FAIL IsoFLOP minima bracketed") for line in headline)
    assert not any(NAN.search(line) for line in headline)
    # A CSV's runs cannot be re-placed by adaptive placement: the fix says what to add instead of a wrong command.
    assert "fix: these runs come from fit.runs_csv" in "\n".join(headline)


def test_the_progress_lines_best_per_budget_sorts_by_number():
    from orchestrator.progress import SweepProgress

    progress = SweepProgress(sweep="s", total=3, planned_flops=1.0)
    progress.best.update({"C=1e+11": 3.0, "C=3e+10": 3.5, "C=1e+10": 4.0})
    assert progress.line().endswith("| best C=1e10:4.0000 C=3e10:3.5000 C=1e11:3.0000")


@pytest.mark.slow  # a real Ray sweep (surrogate trainer, 6 trials) through the CLI: about 30 s
def test_a_user_projects_failing_sweep_ends_with_fixes_that_are_its_own_command_line(tmp_path):
    (tmp_path / "conf" / "sweep").mkdir(parents=True)
    tiny = (REPO / "conf" / "sweep" / "tiny.yaml").read_text()
    (tmp_path / "conf" / "sweep" / "mine.yaml").write_text(tiny.replace("name: tiny", "name: mine"))
    args = ["--config-dir", "conf", "sweep=mine", "trainer=surrogate", "sweep.span=2.0", "fit.bootstrap=20"]
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    headline = lines[next(i for i, line in enumerate(lines) if line.startswith("mine: ")):]
    assert 3 <= len(headline) <= 6 and headline[0].startswith("mine: NOT YET TRUSTWORTHY")
    assert lines[-len(headline) - 1].startswith("runs: http://127.0.0.1:5000/#/experiments/")
    fixes = [line.split("; fix: ", 1)[1] for line in headline if line.startswith("  FAIL ") and "; fix: " in line]
    commands = [shlex.split(f.split(" (")[0]) for f in fixes if f.startswith(sys.executable)]
    assert commands, headline
    for command in commands:  # the user's program, --config-dir and every override, then the change
        assert command[:3] == [sys.executable, "-m", "orchestrator"]
        assert command[3:3 + len(args)] == args and len(command) > 3 + len(args), command
    report = (tmp_path / "reports" / "mine" / "report.md").read_text()
    assert not NAN.search(report)
    assert f"Fix: {sys.executable} -m orchestrator --config-dir conf sweep=mine trainer=surrogate" in report
