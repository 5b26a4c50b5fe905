"""Two GPT-trainer sweeps that differ in one setting (the learning rate), run on Ray and compared through the CLI;
the comparison page in a real headless browser, like the frontier report (tests/report/test_browser.py, whose
chromium helper and probe script this test reuses): it loads offline with no console message and no request,
both figures decode and are drawn, and the multiplier table is in the DOM (slow: two real training sweeps)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow
WIDTH = 1280
SWEEP = ["sweep=tiny", "sweep.budgets=[1e10,2e10]", "sweep.sizes_per_budget=4", "fit.bootstrap=0"]


def _frontier_browser_test():
    """tests/report/test_browser.py as a module (test modules are not importable under --import-mode=importlib)."""
    path = Path(__file__).resolve().parents[1] / "report" / "test_browser.py"
    spec = importlib.util.spec_from_file_location("frontier_browser_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpt_comparison(sim, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("compare_gpt")
    for name, lr in (("lr_3e-3", "3e-3"), ("lr_1e-3", "1e-3")):
        proc = sim.run_cli(*SWEEP, f"sweep.name={name}", f"trainer.lr={lr}", cwd=cwd)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    proc = sim.run_cli("action=compare", "compare.baseline=lr_1e-3", "compare.variants=[lr_3e-3]",
                       "compare.bootstrap=200", "compare.name=lr", "fit.bootstrap=0", cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return cwd / "reports" / "lr"


def test_the_comparison_of_two_gpt_sweeps_is_written(gpt_comparison):
    result = json.loads((gpt_comparison / "compare.json").read_text())
    assert [s["name"] for s in result["sweeps"]] == ["lr_1e-3", "lr_3e-3"]
    assert all(s["n_runs"] == 8 for s in result["sweeps"])
    rows = result["comparisons"][0]["rows"]
    assert [r["C"] for r in rows if r["measured"]] == [1e10, 2e10]
    assert all(r["M"] > 0 and np.isfinite(r["L_base"]) and np.isfinite(r["L_variant"]) for r in rows)


def test_the_comparison_page_renders_in_chromium(gpt_comparison, tmp_path):
    helper = _frontier_browser_test()
    if not Path(helper.CHROMIUM).is_file():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    page = gpt_comparison / "index.html"
    probe_page = gpt_comparison / "probe.html"
    probe_page.write_text(page.read_text().replace("</body>", helper.PROBE + "</body>"))
    try:
        loaded = helper.chromium("--enable-logging=stderr", "--v=0", f"--window-size={WIDTH},1000", "--dump-dom",
                                 probe_page.as_uri(), profile=tmp_path / "profile")
    finally:
        probe_page.unlink()
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert [line for line in loaded.stderr.splitlines() if ":CONSOLE" in line] == []
    match = re.search(r'<pre id="probe">(.*?)</pre>', loaded.stdout, re.S)
    assert match, "the probe did not run: the page did not finish loading"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["requested"] == []
    assert len(probe["figures"]) == 2
    assert all(f["complete"] and f["width"] > 300 and f["height"] > 200 for f in probe["figures"])
    assert 'id="multiplier-table-0"' in loaded.stdout and 'id="checks-table"' in loaded.stdout

    shot = tmp_path / "page.png"
    taken = helper.chromium(f"--window-size={WIDTH},{probe['height']}", f"--screenshot={shot}", page.as_uri(),
                            profile=tmp_path / "profile")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    for figure in probe["figures"]:
        left, top, width, height = figure["box"]
        region = pixels[top:top + height, left:left + width].reshape(-1, 3)
        assert len(np.unique(region, axis=0)) > 100 and float((region.min(axis=1) < 200).mean()) > 0.01, figure
