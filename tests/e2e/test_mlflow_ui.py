"""The MLflow UI a sweep's printed URL opens, in a real headless browser (Debian's chromium) against a real `mlflow
ui` on the sweep's own store: model-training mode, trials only (no parent run, no lease), each trial named by what
it trains with its N, D, C, tokens per parameter and final loss in the table without a click; a trial's page opens
its Model metrics on the loss curves (orchestrator/tracking.py: VIEW, CURVES)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--window-size=1920,1000", "--virtual-time-budget=30000"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _text(dom: str) -> str:
    """The page's text, cells separated by ' | ' (the DOM's tags removed)."""
    return re.sub(r"(\s*\|\s*)+", " | ", re.sub(r"<[^>]+>", " | ", dom))


def _cell(x: float) -> str:
    return f"{x:.15g}"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A real surrogate sweep through the CLI (2 budgets x 3 sizes on Ray), then `mlflow ui` on its store."""
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    cwd = tmp_path_factory.mktemp("ui_sweep")
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "trainer=surrogate", "sweep.name=ui",
                           "fit.bootstrap=20"], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = next(line for line in proc.stdout.splitlines() if line.startswith("runs: "))
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui", "--host", "127.0.0.1", "--port",
                               str(port), "--backend-store-uri", f"sqlite:///{cwd / 'mlflow.db'}"], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow ui did not start within 120 s"
                time.sleep(0.5)
        url = printed.removeprefix("runs: ").split()[0].replace("127.0.0.1:5000", f"127.0.0.1:{port}")
        yield cwd, url, MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=180)


@pytest.mark.slow
def test_the_printed_url_opens_on_every_trials_n_d_c_and_final_loss(swept, tmp_path):
    cwd, url, client = swept
    experiment = client.get_experiment_by_name("ui")
    trials = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'trial'")
    others = client.search_runs([experiment.experiment_id], filter_string="tags.kind != 'trial'")
    assert len(trials) == 6 and {r.data.tags["kind"] for r in others} == {"sweep", "lease"}
    page = chromium("--dump-dom", url, profile=tmp_path / "profile")
    assert page.returncode == 0, page.stderr[-2000:]
    text = _text(page.stdout)
    assert "Model training" in text and "Scaling-law sweep" in text  # not GenAI mode; the experiment's description
    header = text.split("Run Name | Created | Metrics | Tags | ", 1)[1].split(" | Hide run")[0].split(" | ")
    # Every column of the view is on the page (the UI applies the view's column order after the grid is drawn, which
    # a headless load does not always wait for: the order is read from the header, not assumed).
    assert {"N", "D", "C", "tokens_per_param", "final_loss", "status"} <= set(header) <= {
        "N", "D", "C", "tokens_per_param", "final_loss", "status", "Duration"}, header
    for run in trials:
        m = run.data.metrics
        assert run.info.run_name.startswith(("C=1e10 N=", "C=2e10 N=")) and "e+" not in run.info.run_name
        assert f" | {run.info.run_name} | " in text
        # The row's cells, in the view's column order, each the number the store holds.
        assert m["N"] == float(run.data.params["N_total"]) and m["C"] == float(run.data.params["C_exact"])
        assert abs(m["final_loss"] / m["final_eval_loss"] - 1) < 1e-4
        # The row's cells: the run's N, D, C, tokens per parameter and final loss, each the number the store holds,
        # side by side (within one row's width of cells; their order follows the header, read above).
        cells = [_cell(m[k]) for k in ("N", "D", "C", "tokens_per_param", "final_loss")] + ["finished"]
        words = text.split(" | ")
        width = len(header) + 1
        assert any(set(cells) <= set(words[i:i + width]) for i in range(len(words))), (header, cells)
    for run in others:  # the parent run and the lease are filtered out of the table
        assert run.info.run_name not in text
    assert "6 | matching runs" in text
    shot = tmp_path / "runs.png"
    assert chromium(f"--screenshot={shot}", url, profile=tmp_path / "profile").returncode == 0
    assert shot.stat().st_size > 20_000


@pytest.mark.slow
def test_a_trials_page_opens_its_metrics_on_the_loss_curves(swept, tmp_path):
    cwd, url, client = swept
    experiment = client.get_experiment_by_name("ui")
    run = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'trial'")[0]
    base = url.split("#")[0]
    page = chromium("--dump-dom", f"{base}#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}/model-metrics"
                    "?workflowType=machine_learning", profile=tmp_path / "profile")
    text = _text(page.stdout)
    charts = text[text.find("Auto-refresh"):][:800]
    # The loss section (loss/train, loss/eval) comes first, above the section of everything else, whose first charts
    # are bar charts of the run's single numbers (C, D, N). (The charts themselves are drawn lazily: the sections
    # are what the DOM holds at once.)
    assert charts.startswith("Auto-refresh | loss | (2) | Add chart | "), charts
    assert charts.index("| loss | (2) |") < charts.index("| Model metrics | (")
    assert {"loss/train", "loss/eval"} <= set(client.get_run(run.info.run_id).data.metrics)
    history = [m.value for m in client.get_metric_history(run.info.run_id, "loss/train")]
    assert history == [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")] and len(history) > 1
