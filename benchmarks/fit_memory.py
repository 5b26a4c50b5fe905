"""Memory and time of the command a user runs, `action=report fit.runs_csv=runs.csv` (read the table, every
fit method with its bootstrap, the report's files and figures), measured on the CLI process: the peak resident
memory of its whole process tree, sampled from /proc (benchmarks/treerss.py), on 1k to 1M runs. Then the fit
alone (`run_fit`, every method, 1000-resample bootstrap) on 1k, 10k and 100k runs, side by side with the fitting
code before it was made memory-bounded (the commit BEFORE below), each in its own process so its peak resident
memory is its own.

The runs come from a known law with 0.5% noise, 10 budgets of random sizes (publication-scale tables: Gadre et
al. 2024 have thousands of runs, checkpoint-level tables hundreds of thousands). The old code holds 4500 starts x
n points per evaluation and every resample's weights at once, so it is run under an address-space cap (it was
killed by the kernel at 24 GB on 100k runs) and reported as over the cap when it hits it. The objective of both
on each table shows they find the same optimum; on the Epoch data both return the full 4500-start grid's
0.0010182740 (benchmarks/fit_speed.py compares that with a plain scipy loop).

    python benchmarks/fit_memory.py            # CLI on 10k, 100k, 1M; run_fit on 1k, 10k, 100k (about 40 minutes)
    python benchmarks/fit_memory.py --smoke    # 1k runs, 50 resamples, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from treerss import run_measured

CLI_BOOTSTRAP = {1_000: 50, 10_000: 1000, 100_000: 1000, 1_000_000: 100}
"""Resamples per CLI table size (the smoke size 50; 1M runs 100, whose bootstrap would take hours at 1000)."""
BEFORE = "4bf08631a4c1e2c06fc088414d9eea011fc32b3a"  # main before the one-compute fitting rework (issue 10, 12)
CAP_GB = 12.0
EPOCH = ROOT.parent / "shared" / "reference" / "epoch_chinchilla_svg_extracted_data.csv"


def table(n: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    C = np.repeat(np.geomspace(1e18, 1e21, 10), n // 10)
    centre = np.sqrt(C / 6 / 20)
    N = np.exp(rng.uniform(np.log(centre / 8), np.log(centre * 8)))
    D = C / (6 * N)
    L = (1.69 + 406.4 / N ** 0.34 + 410.7 / D ** 0.28) * np.exp(rng.normal(0, 0.005, len(N)))
    return pd.DataFrame({"n_params": N, "tokens": D, "flops": C, "budget": C, "loss": L})


def worker(n: int, bootstrap: int, out: str) -> None:
    """One fit in this process; prints a JSON line with its time, peak memory and optimum."""
    from orchestrator.fitting.options import ColumnMap, FitConfig
    from orchestrator.fitting.run import run_fit

    if n == 0:  # the Epoch data: the published refit's objective
        options = FitConfig(runs_csv=str(EPOCH), columns=ColumnMap(n_params="Model Size", flops="Training FLOP"),
                            drop_highest=5, bootstrap=bootstrap, out_dir=out)
        frame = None
    else:
        options, frame = FitConfig(bootstrap=bootstrap, out_dir=out), table(n)
    t0 = time.perf_counter()
    result = run_fit(options, table=frame, out_dir=out).result
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(json.dumps({"seconds": seconds, "peak_gb": peak, "objective": result["parametric"]["objective"],
                      "alpha": result["parametric"]["alpha"], "beta": result["parametric"]["beta"]}))


def run(code: Path, n: int, bootstrap: int, *, cap_gb: float | None, timeout: float) -> dict:
    def limit() -> None:
        if cap_gb is not None:
            cap = int(cap_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"}
    with tempfile.TemporaryDirectory() as out:
        try:
            proc = subprocess.run([sys.executable, __file__, "--worker", str(n), str(bootstrap), out], cwd=out,
                                  env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
        except subprocess.TimeoutExpired:
            return {"status": f"over {timeout / 60:.0f} min"}
    if proc.returncode != 0:
        memory = "MemoryError" in proc.stderr or "Unable to allocate" in proc.stderr or proc.returncode < 0
        return {"status": f"over the {cap_gb:g} GB cap" if memory else f"failed ({proc.stderr.strip()[-200:]})"}
    return {"status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1])}


def before_code() -> Path | None:
    """The fitting code of commit BEFORE, extracted from git into a temporary folder (None without git)."""
    try:
        blob = subprocess.run(["git", "archive", BEFORE, "orchestrator", "trainers"], cwd=ROOT, capture_output=True,
                              check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    folder = Path(tempfile.mkdtemp(prefix="fit_before_"))
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def cli(n: int, bootstrap: int, *, timeout: float) -> dict:
    """`action=report fit.runs_csv=...` on a table of n runs in a fresh folder; wall time and peak memory of the
    CLI's process tree."""
    with tempfile.TemporaryDirectory() as out:
        table(n).to_csv(Path(out) / "runs.csv", index=False)
        with open(Path(out) / "log.txt", "w") as log:
            try:
                code, seconds, tree_gb, largest_gb = run_measured(
                    [sys.executable, "-m", "orchestrator", "action=report", "fit.runs_csv=runs.csv",
                     f"fit.bootstrap={bootstrap}"], cwd=out, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"},
                    stdout=log, stderr=log, timeout=timeout)
            except subprocess.TimeoutExpired:
                return {"status": f"over {timeout / 60:.0f} min"}
        if code not in (0, 1):
            return {"status": f"failed ({(Path(out) / 'log.txt').read_text().strip()[-200:]})"}
        figures = len(list((Path(out) / "reports" / "runs").glob("*.png")))
    return {"status": "ok", "seconds": seconds, "peak_gb": max(tree_gb, largest_gb), "figures": figures}


def cell(r: dict | None) -> str:
    if r is None:
        return "not run"
    if r["status"] != "ok":
        return r["status"]
    return f"{r['seconds']:7.1f} s {r['peak_gb']:6.2f} GB  objective {r['objective']:.10g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1k runs, 50 resamples")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(int(args.worker[0]), int(args.worker[1]), args.worker[2])
    sizes, bootstrap = ([1000], 50) if args.smoke else ([1000, 10_000, 100_000], 1000)
    cli_sizes = [1000] if args.smoke else [10_000, 100_000, 1_000_000]
    print("the CLI: action=report fit.runs_csv=runs.csv, peak RSS of the process tree")
    for n in cli_sizes:
        r = cli(n, CLI_BOOTSTRAP[n], timeout=4 * 3600)
        shown = (f"{r['seconds']:7.1f} s  peak {r['peak_gb']:.2f} GB  {r['figures']} figures" if r["status"] == "ok"
                 else r["status"])
        print(f"{n:>10,} runs, {CLI_BOOTSTRAP[n]:>4} resamples: {shown}", flush=True)
        if n == max(cli_sizes):
            ok = r["status"] == "ok" and r["peak_gb"] < 2
            print(f"floor: {n:,} runs in under 2 GB: {'ok' if ok else 'MISSED'} "
                  f"({r.get('peak_gb', float('nan')):.2f} GB, the CLI's process tree)", flush=True)
    old = before_code()
    print(f"whole fit with {bootstrap} bootstrap resamples, each run in its own process; before = {BEFORE[:8]}"
          f" (capped at {CAP_GB:g} GB)")
    print(f"{'runs':>8}  {'ours':<52} {'before':<52} time ratio")
    rows = []
    cases = ([0] if EPOCH.is_file() else []) + sizes
    for n in cases:
        ours = run(ROOT, n, bootstrap, cap_gb=None, timeout=3600)
        # The old code on 100k runs needs tens of GB: it is only run where it can finish under the cap.
        before = run(old, n, bootstrap, cap_gb=CAP_GB, timeout=1800) if old is not None and n <= 10_000 else None
        if old is not None and n > 10_000:
            before = {"status": "not run: killed at 24 GB (issue 12)"}
        ratio = (f"{before['seconds'] / ours['seconds']:.2f}x" if before and before.get("status") == "ok"
                 and ours.get("status") == "ok" else "-")
        label = "Epoch" if n == 0 else f"{n:,}"
        print(f"{label:>8}  {cell(ours):<52} {cell(before):<52} {ratio}", flush=True)
        rows.append((n, ours, before))
    big = [o for n, o, _ in rows if n == max(sizes)]
    if big and big[0]["status"] == "ok":
        print(f"run_fit alone: {max(sizes):,} runs in under 2 GB: {'ok' if big[0]['peak_gb'] < 2 else 'MISSED'} "
              f"({big[0]['peak_gb']:.2f} GB)")
    for n, ours, before in rows:
        if before and before.get("status") == "ok" and ours.get("status") == "ok":
            same = abs(ours["objective"] - before["objective"]) <= 1e-9 * max(before["objective"], 1e-12)
            print(f"same optimum on {'Epoch' if n == 0 else f'{n:,} runs'}: {'yes' if same else 'NO'} "
                  f"(objective {ours['objective']:.12g} vs {before['objective']:.12g})")


if __name__ == "__main__":
    main()
