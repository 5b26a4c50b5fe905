"""A forked sweep against the same sweep run as independent trials, side by side in one run, through the CLI.

The sweep is `conf/sweep/forks_tiny.yaml` widened to 3 sizes x 4 token counts (1, 2, 4, 8x) of the GPT trainer
on the synthetic language, WSD with 20% 1-sqrt cooldowns (Hägele et al. 2024). Each variant runs in its own
folder (its own MLflow store: the forks keep the independent runs' trial ids, so one store would find the second
variant already done). Printed: the FLOPs actually trained (trunks + cooldowns against every run from scratch),
the wall time, each fork's loss against its independent twin, and the fitted allocation exponent a of each, with
the independent sweep's 95% bootstrap interval.

    python benchmarks/forks.py            # 3 sizes x 4 token counts, fit.bootstrap=200 (a few minutes)
    python benchmarks/forks.py --smoke    # 2 sizes x 2 token counts, no bootstrap
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(folder: Path, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=folder, env=env, capture_output=True,
                         text=True, timeout=3600)
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0


def trained_flops(folder: Path) -> tuple[float, dict[str, float]]:
    """FLOPs actually trained in the store (a fork only from its fork point) and each trial's final loss."""
    sys.path.insert(0, str(ROOT))
    from orchestrator.tracking import open_store

    tracker = open_store(f"sqlite:///{folder / 'mlflow.db'}", experiment="forks_tiny", timeout_s=30, create=False)
    total, losses = 0.0, {}
    for record in [*tracker.trial_runs(), *tracker.trunk_runs()]:
        metrics = record.metrics
        per_token = metrics["flops_per_token"]
        total += (metrics["tokens"] - metrics.get("resumed_from_tokens", 0.0)) * per_token
        if record.tags.get("kind") == "trial":
            losses[record.trial_id] = metrics["final_eval_loss"]
    return total, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    opts = parser.parse_args()
    sizes, tokens, bootstrap = (([20000, 40000], [65536, 131072], 0) if opts.smoke else
                                ([15000, 30000, 60000], [65536, 131072, 262144, 524288], 200))
    common = ["sweep=forks_tiny", f"sweep.sizes=[{','.join(map(str, sizes))}]",
              f"sweep.tokens=[{','.join(map(str, tokens))}]", f"fit.bootstrap={bootstrap}", "cluster.num_cpus=2"]
    with tempfile.TemporaryDirectory() as tmp:
        # ABBA order (forked, independent, independent, forked) so that a load change on the shared machine
        # falls on both variants; --smoke runs each once.
        order = ["forked", "independent"] if opts.smoke else ["forked", "independent", "independent", "forked"]
        walls: dict[str, list[float]] = {"forked": [], "independent": []}
        for index, name in enumerate(order):
            folder = Path(tmp) / f"{name}{index}"
            folder.mkdir()
            walls[name].append(run(folder, *common, *([] if name == "forked" else ["sweep.forks=false"])))
        forked, plain = Path(tmp) / "forked0", Path(tmp) / "independent1"
        wall_forked, wall_plain = (sum(walls[k]) / len(walls[k]) for k in ("forked", "independent"))
        flops_forked, loss_forked = trained_flops(forked)
        flops_plain, loss_plain = trained_flops(plain)
        fits = {name: json.loads((folder / "reports" / "forks_tiny" / "fit.json").read_text())
                for name, folder in (("forked", forked), ("independent", plain))}
    saved = 1 - flops_forked / flops_plain
    print(f"design: {len(sizes)} sizes x {len(tokens)} token counts ({', '.join(f'{t:g}' for t in tokens)}), "
          f"WSD 20% 1-sqrt cooldowns, GPT on the synthetic language, 2 CPU slots")
    print(f"FLOPs trained: forked {flops_forked:.4g}, independent {flops_plain:.4g}: forks save {100 * saved:.1f}%")
    print(f"wall time (sweep + report, mean of {len(walls['forked'])}): forked {wall_forked:.0f} s, independent "
          f"{wall_plain:.0f} s (ratio {wall_forked / wall_plain:.2f}; each: forked "
          f"{', '.join(f'{w:.0f}' for w in walls['forked'])} s, independent "
          f"{', '.join(f'{w:.0f}' for w in walls['independent'])} s)")
    diffs = [abs(loss_forked[t] - loss_plain[t]) for t in loss_plain if t in loss_forked]
    print(f"same trial ids: {len(diffs)} of {len(loss_plain)}; largest |fork - independent| final eval loss "
          f"{max(diffs):.2e} nats")
    a_f = fits["forked"]["parametric"].get("a")
    a_p = fits["independent"]["parametric"].get("a")
    ci = (fits["independent"]["parametric"].get("ci") or {}).get("a")
    inside = ci is not None and a_f is not None and ci[0] <= a_f <= ci[1]
    print(f"fitted a (parametric): forked {a_f}, independent {a_p}"
          + (f", independent 95% interval [{ci[0]:.3f}, {ci[1]:.3f}]: forked a inside: {inside}" if ci else
             " (no interval: fit.bootstrap=0)"))
    floor_ok = saved >= (0.35 if len(tokens) >= 4 else 0.0) and max(diffs) < 1e-3
    print(f"floor: forks save >= 35% for 4 token counts and match their independent runs within 1e-3 nats: "
          f"{'ok' if floor_ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
