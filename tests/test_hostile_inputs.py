"""Inputs a user can make that used to end in a traceback: each is now one sentence naming the problem, exit 2,
through the real CLI in a scratch folder."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest


def write_runs(path: Path, loss) -> Path:
    """An IsoFLOP design of 3 budgets x 5 sizes with loss(i, N, D) as given."""
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["n_params", "tokens", "flops", "loss"])
        i = 0
        for C in (1e17, 1e18, 1e19):
            for f in (0.3, 0.6, 1.0, 1.7, 3.0):
                N = f * math.sqrt(C / 120)
                D = C / (6 * N)
                out.writerow([N, D, C, loss(i, N, D)])
                i += 1
    return path


def one_sentence(result, *starts: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    for start in starts:
        assert start in lines[0], lines[0]
    return lines[0]


FLAT = "all 15 kept runs have the same loss (3): a scaling law needs losses that change with N and D"


@pytest.mark.parametrize("action", ["fit", "report"])
def test_a_csv_whose_losses_are_all_equal_is_one_sentence(cli, tmp_path, action):
    write_runs(tmp_path / "flat.csv", lambda i, N, D: 3.0)
    one_sentence(cli(f"action={action}", "fit.runs_csv=flat.csv", "fit.bootstrap=0"), FLAT)
    assert not (tmp_path / "reports").exists()  # nothing half-written


@pytest.mark.parametrize(("huge", "words"), [
    ("1e300", "column loss has 4 value(s) above 1e+06 (the first in run row0, the largest 1e+300)"),
    ("inf", None),  # an infinite loss is a diverged run: left out; the rest are flat
])
def test_a_csv_with_huge_values_is_one_sentence(cli, tmp_path, huge, words):
    write_runs(tmp_path / "huge.csv", lambda i, N, D: [huge, 3.0, 3.0, 3.0][i % 4])
    line = one_sentence(cli("action=fit", "fit.runs_csv=huge.csv", "fit.bootstrap=0"))
    assert (words or "all 11 kept runs have the same loss (3)") in line


def test_compare_on_a_flat_csv_is_one_sentence(cli, tmp_path):
    write_runs(tmp_path / "flat.csv", lambda i, N, D: 3.0)
    write_runs(tmp_path / "good.csv", lambda i, N, D: 2 + 100 / N ** 0.3 + 300 / D ** 0.3)
    one_sentence(cli("action=compare", "compare.baseline=flat.csv", "compare.variants=[good.csv]",
                     "compare.bootstrap=0"), "compare.baseline='flat.csv': " + FLAT)


def test_an_unparsable_yaml_under_config_dir_is_one_sentence(cli, tmp_path):
    (tmp_path / "conf" / "sweep").mkdir(parents=True)
    bad = tmp_path / "conf" / "sweep" / "mine.yaml"
    bad.write_text("# @package _global_\nsweep:\n  name: [unclosed\n  kind: grid\n")
    line = one_sentence(cli("--config-dir", "conf", "sweep=mine", "action=plan"))
    assert line.startswith(f"error: {bad} is not valid YAML: ") and "at line 4, column 7" in line, line
    assert {p.name for p in tmp_path.iterdir()} == {"conf"}  # nothing written
