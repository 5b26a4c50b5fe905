"""`action=plan` of a very large sweep through the real CLI: wall time, peak memory and printed size.

    python benchmarks/plan_scale.py            # 1,002,000 trials (3 sizes x 334 token counts x 1000 seeds)
    python benchmarks/plan_scale.py --smoke    # seconds: 20,040 trials (3 x 334 x 20)

The plan view prints the first and last 30 rows of a plan this large and says how many it left out; the
totals cover every trial. Floors for the full size: under 60 s, under 2 GiB peak, under 100 kB printed
(an adversarial pass had measured 133 s, 3.6 GB and 117 MB before: mostly dataclasses.asdict and a JSON
round trip per trial, the cycle collector's full passes, and a million printed rows).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOORS = {"wall_s": 60.0, "peak_mib": 2048.0, "printed_kb": 100.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="20k trials instead of 1M")
    args = parser.parse_args()
    seeds = 20 if args.smoke else 1000
    tokens = "[" + ",".join(str(1_000_000 + 4096 * i) for i in range(334)) + "]"
    cmd = [sys.executable, "-m", "orchestrator", "sweep=grid_example", f"sweep.tokens={tokens}",
           "sweep.seeds=[" + ",".join(str(s) for s in range(seeds)) + "]", "action=plan"]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=folder, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                             text=True, timeout=1800)
        wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"plan failed: {out.stderr[-2000:]}")
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux
    trials = 3 * 334 * seeds
    shown = next(line for line in out.stdout.splitlines() if "rows not shown" in line)
    figures = {"wall_s": wall, "peak_mib": peak_mib, "printed_kb": len(out.stdout.encode()) / 1000}
    print(f"plan of {trials} trials: {wall:.1f} s wall ({wall / trials * 1e6:.0f} us per trial, interpreter "
          f"start and composition included), peak {peak_mib:.0f} MiB, printed {figures['printed_kb']:.1f} kB")
    print(f"table: {shown.strip()}")
    if not args.smoke:
        for key, floor in FLOORS.items():
            print(f"{key}: {figures[key]:.1f} (floor {floor:g}) {'ok' if figures[key] <= floor else 'OVER'}")


if __name__ == "__main__":
    main()
