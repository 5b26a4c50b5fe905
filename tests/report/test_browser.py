"""The page of a real small sweep in a real headless browser (Debian's chromium): it loads offline with no
console message and no network request, every figure decodes and is drawn (its screenshot region is not
blank), and the headline table is in the DOM.

Chromium cannot report image decoding from the command line, so the test loads a copy of the page with a
probe script appended after the content (the report itself has no script): on load it records each
figure's decoded size and position, every resource the page requested, and the page height. A second run
screenshots the unmodified page at that height; each figure's region must hold a drawing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
WIDTH = 1280
PROBE = """
<script>
window.addEventListener("load", () => {
  const figures = [...document.querySelectorAll("figure img")].map(img => {
    const r = img.getBoundingClientRect();
    return {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
            box: [r.left, r.top + window.scrollY, r.width, r.height].map(Math.round)};
  });
  const requested = performance.getEntriesByType("resource").map(e => e.name).filter(n => !n.startsWith("data:"));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({figures, requested, height: document.documentElement.scrollHeight,
                                    headline: !!document.querySelector("#headline-table tbody tr")});
  document.body.appendChild(out);
});
</script>
"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def browser_ready():
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")


@pytest.mark.slow
def test_page_of_a_real_sweep_renders_in_chromium(browser_ready, surrogate_sweep, tmp_path):
    page = surrogate_sweep.folder / "index.html"
    probe_page = surrogate_sweep.folder / "probe.html"  # beside the page: same folder, same relative paths
    probe_page.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        loaded = chromium("--enable-logging=stderr", "--v=0", f"--window-size={WIDTH},1000", "--dump-dom",
                          probe_page.as_uri(), profile=tmp_path / "profile")
    finally:
        probe_page.unlink()
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    # Console messages (errors, warnings, anything a script logs) appear as INFO:CONSOLE lines; the page has
    # no script and the probe logs nothing, so any such line is a failure.
    console = [line for line in loaded.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    match = re.search(r'<pre id="probe">(.*?)</pre>', loaded.stdout, re.S)
    assert match, "the probe did not run: the page did not finish loading"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["headline"] and "headline-table" in loaded.stdout
    assert probe["requested"] == []  # nothing fetched: not from the network, not even from disk
    assert len(probe["figures"]) == 8
    assert all(f["complete"] and f["width"] > 300 and f["height"] > 200 for f in probe["figures"])

    shot = tmp_path / "page.png"
    taken = chromium(f"--window-size={WIDTH},{probe['height']}", f"--screenshot={shot}", page.as_uri(),
                     profile=tmp_path / "profile")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[0] >= probe["height"] - 1
    for figure in probe["figures"]:
        left, top, width, height = figure["box"]
        region = pixels[top:top + height, left:left + width].reshape(-1, 3)
        colours = len(np.unique(region, axis=0))
        inked = float((region.min(axis=1) < 200).mean())  # share of pixels darker than the white background
        assert colours > 100 and inked > 0.01, (figure, colours, inked)
