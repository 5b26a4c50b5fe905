"""The throughput probe (orchestrator/throughput.py): real timed steps of the GPT trainer, cached per shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def plan(tmp_path: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "action=plan", *args], cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "c"),
                              "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_the_plan_times_trials_from_a_cached_probe(tmp_path):
    # 2 CPUs, 1 per trial: the sweep runs 2 trials at once, and so does the probe.
    first = plan(tmp_path, "cluster.throughput=probe", "cluster.num_cpus=2")
    assert "from the throughput probe (probed on cpu x1 thread(s), 2 at once: 5 shape(s) now, 0 from" in first
    cache = json.loads((tmp_path / "c" / "scaling-orchestrator" / "throughput.json").read_text())
    assert len(cache) == 5 and all(v["s_train"] > 0 and v["s_eval"] > 0 for v in cache.values())
    assert {json.loads(key)["concurrency"] for key in cache} == {2}
    second = plan(tmp_path, "cluster.throughput=probe", "cluster.num_cpus=2")
    assert "0 shape(s) now, 5 from" in second  # nothing probed again
    # One trial at a time is another measurement: probed anew, cached beside the first.
    alone = plan(tmp_path, "cluster.throughput=probe", "cluster.num_cpus=2", "cluster.max_concurrent=1")
    assert "1 at once: 5 shape(s) now, 0 from" in alone
    assert len(json.loads((tmp_path / "c" / "scaling-orchestrator" / "throughput.json").read_text())) == 10
    # The per-trial estimates come from the cached speeds: the same figures both times.
    assert [line.split()[-2] for line in first.splitlines()[2:8]] == [line.split()[-2] for line in
                                                                      second.splitlines()[2:8]]
    assumed = plan(tmp_path)
    assert "at an assumed 3e+10 FLOP/s per worker" in assumed and "throughput probe" not in assumed


def test_the_plan_shows_workers_gpus_gpu_hours_and_cost(tmp_path):
    # cluster=gpu_gang: C=1e19 gets 8 workers of 1 GPU, C=2e20 16; at an assumed 3e14 FLOP/s per worker the
    # trials take 1e19/(3e14 x 8) = 69.4 min and 2e20/(3e14 x 16) = 11.6 h, and 2.1e20/3e14 s = 194.4 GPU-hours.
    out = plan(tmp_path, "cluster=gpu_gang", "sweep.budgets=[1e19,2e20]", "sweep.sizes_per_budget=1",
               "cluster.gpu_hour_cost=2.5")
    rows = [line.split() for line in out.splitlines()[2:4]]
    assert [(r[12], r[13], r[15]) for r in rows] == [("8", "8", "69.4m"), ("16", "16", "11.6h")]
    c = [float(r[6]) for r in rows]
    hours = sum(c) / 3e14 / 3600
    assert f"GPU time: {hours:.3g} GPU-hours for the 2 not finished, about {2.5 * hours:,.2f} at 2.5" in out
    assert "on 16 slot(s)" in out  # the largest gang's workers at least


def test_the_probe_runs_as_many_copies_as_trials_share_a_device():
    from orchestrator.config import ClusterConfig
    from orchestrator.throughput import probe_concurrency

    assert probe_concurrency(ClusterConfig(cpus_per_trial=1), slots=8) == 8  # on CPUs: the sweep's slots
    # On a GPU: the trials one GPU holds (a quarter each: 4), never more than the slots.
    assert probe_concurrency(ClusterConfig(gpus_per_trial=0.25), slots=8) == 4
    assert probe_concurrency(ClusterConfig(gpus_per_trial=0.25), slots=2) == 2
    assert probe_concurrency(ClusterConfig(gpus_per_trial=0.3), slots=8) == 3
    assert probe_concurrency(ClusterConfig(gpus_per_trial=1), slots=8) == 1
