"""The plan as a table: what each trial trains, what it costs, and whether it is already done."""

from __future__ import annotations

from orchestrator.config import ClusterConfig
from orchestrator.planner import Trial, human


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def slots(cluster: ClusterConfig, *, cpus: int) -> int:
    """Trials that can run at once on a local instance of `cpus` CPUs (or the cap)."""
    n = max(1, cpus // cluster.cpus_per_trial)
    return min(n, cluster.max_concurrent) if cluster.max_concurrent else n


def format_plan(trials: list[Trial], *, cluster: ClusterConfig, cpus: int, sweep: str,
                statuses: dict[str, str] | None = None) -> str:
    """One row per trial, then totals. Time assumes cluster.assumed_flops_per_s per trial."""
    rate = cluster.assumed_flops_per_s
    header = ["trial_id", "budget C", "shape LxD/H", "N_total", "N_nonemb", "D", "C_exact", "D/N", "C/6ND",
              "lr", "seed", "est", "status"]
    rows = []
    for t in trials:
        rows.append([
            t.trial_id, f"{t.budget:.3g}" if t.budget is not None else "-", t.shape, human(t.cost.n_total),
            human(t.cost.n_nonembed), human(t.tokens), f"{t.cost.c_exact:.3e}", f"{t.cost.tokens_per_param:.1f}",
            f"{t.cost.c_ratio:.3f}", f"{t.config['trainer']['lr']:.3g}", str(t.config["seed"]),
            duration(t.cost.c_exact / rate), (statuses or {}).get(t.trial_id, "pending"),
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    total = sum(t.cost.c_exact for t in trials)
    serial = total / rate
    n_slots = slots(cluster, cpus=cpus)
    pending = [t for t in trials if (statuses or {}).get(t.trial_id, "pending") != "finished"]
    pending_flops = sum(t.cost.c_exact for t in pending)
    counts: dict[str, int] = {}
    for t in trials:
        s = (statuses or {}).get(t.trial_id, "pending")
        counts[s] = counts.get(s, 0) + 1
    lines.append("")
    lines.append(f"sweep {sweep}: {len(trials)} trials, {total:.3e} FLOPs "
                 f"(C_6ND {sum(t.cost.c_6nd for t in trials):.3e})")
    lines.append("status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append(
        f"estimated time: {duration(serial)} of trial time; about {duration(pending_flops / rate / n_slots)} "
        f"wall for the {len(pending)} not finished on {n_slots} slot(s), at an assumed "
        f"{rate:.2g} FLOP/s per trial (cluster.assumed_flops_per_s)"
    )
    return "\n".join(lines)
