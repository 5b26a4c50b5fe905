"""The plan as a table: what each trial trains, what it costs, and whether it is already done.

A plan of more than MAX_ROWS trials shows its first and last rows and says so (a million-row table helps
nobody and took minutes to print); the totals always cover every trial. An estimate beyond a year gets a
plain warning: such budgets are almost always a typo (an exponent too many).
"""

from __future__ import annotations

from trainers.api import Status
from orchestrator.cluster_options import ClusterConfig
from orchestrator.planner import Trial, human
from orchestrator.throughput import Estimate

MAX_ROWS = 60
"""Plans with more trials show the first and last MAX_ROWS // 2 rows."""
YEAR_S = 365.25 * 86400
HEADER = ["trial_id", "budget C", "shape LxD/H", "N_total", "N_nonemb", "D", "C_exact", "D/N", "C/6ND", "lr",
          "batch", "steps", "workers", "GPUs", "seed", "est", "status"]


def duration(seconds: float) -> str:
    """42s, 12.5m, 3.2h, 4.1d, 2.3e+04 years."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}m"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds < YEAR_S:
        return f"{seconds / 86400:.1f}d"
    return f"{seconds / YEAR_S:.3g} years"


def slots(cluster: ClusterConfig, *, cpus: int) -> int:
    """Trials that can run at once on a local instance of `cpus` CPUs (or the cap)."""
    n = max(1, cpus // cluster.cpus_per_trial)
    return min(n, cluster.max_concurrent) if cluster.max_concurrent else n


def workers_of(t: Trial, cluster: ClusterConfig) -> int:
    """The trial's workers (cluster.workers_per_trial or cluster.workers_rule)."""
    return cluster.workers_for(C=t.budget if t.budget is not None else t.cost.c_exact, N=t.cost.n_total, D=t.tokens)


def _row(t: Trial, *, seconds: float, status: str, cluster: ClusterConfig) -> list[str]:
    k = workers_of(t, cluster)
    return [
        t.trial_id, f"{t.budget:.3g}" if t.budget is not None else "-", t.shape, human(t.cost.n_total),
        human(t.cost.n_nonembed), human(t.tokens), f"{t.cost.c_exact:.3e}", f"{t.cost.tokens_per_param:.1f}",
        f"{t.cost.c_ratio:.3f}", f"{t.config['trainer']['lr']:.3g}", str(t.config["trainer"]["batch_tokens"]),
        str(t.steps), str(k), f"{k * cluster.gpus_per_trial:g}", str(t.config["seed"]),
        duration(seconds / k),
        status if t.invalid is None else f"{status}, INVALID",
    ]


def format_plan(trials: list[Trial], *, cluster: ClusterConfig, cpus: int, sweep: str,
                statuses: dict[str, str] | None = None, estimate: Estimate | None = None) -> str:
    """One row per trial (or the first and last rows of a large plan), then totals. Time is the throughput
    probe's `estimate` (orchestrator/throughput.py) when given, else cluster.assumed_flops_per_s per worker."""
    rate, statuses = cluster.assumed_flops_per_s, statuses or {}
    seconds = {t.trial_id: (estimate.seconds[t.trial_id] if estimate is not None else t.cost.c_exact / rate)
               for t in trials}
    half = MAX_ROWS // 2
    shown = trials if len(trials) <= MAX_ROWS else [*trials[:half], *trials[-half:]]
    rows = [_row(t, seconds=seconds[t.trial_id], status=statuses.get(t.trial_id, Status.PENDING), cluster=cluster)
            for t in shown]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(HEADER)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths)), "  ".join("-" * w for w in widths)]
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if len(trials) > MAX_ROWS:
        body.insert(half, f"... {len(trials) - MAX_ROWS} rows not shown: showing the first {half} and last {half} "
                          f"of {len(trials)} trials ...")
    lines += body
    total = sum(t.cost.c_exact for t in trials)
    serial = sum(seconds[t.trial_id] / workers_of(t, cluster) for t in trials)  # each trial's own wall time
    # A gang needs its workers at once: the cluster holds at least the largest one (the run refuses it otherwise).
    n_slots = max(slots(cluster, cpus=cpus), max((workers_of(t, cluster) for t in trials), default=1))
    counts: dict[str, int] = {}
    pending_s, longest, n_pending = 0.0, 0.0, 0
    for t in trials:
        status = statuses.get(t.trial_id, Status.PENDING)
        counts[status] = counts.get(status, 0) + 1
        if status != Status.FINISHED:
            pending_s += seconds[t.trial_id]
            longest = max(longest, seconds[t.trial_id] / workers_of(t, cluster))
            n_pending += 1
    # A trial of k workers runs at k x the per-worker rate (ideal data parallelism: an upper bound on its speed)
    # and holds k of the slots: the worker-seconds are unchanged by k.
    wall = max(pending_s / n_slots, longest)  # the slots' share, or the longest trial if that is longer
    gpu_hours = pending_s * cluster.gpus_per_trial / 3600
    lines.append("")
    lines.append(f"sweep {sweep}: {len(trials)} trials, {total:.3e} FLOPs "
                 f"(C_6ND {sum(t.cost.c_6nd for t in trials):.3e})")
    lines.append("status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append(
        f"estimated time: {duration(serial)} of trial time; about {duration(wall)} "
        f"wall for the {n_pending} not finished on {n_slots} slot(s), "
        + (f"from the throughput probe ({estimate.source})" if estimate is not None else
           f"at an assumed {rate:.2g} FLOP/s per worker (cluster.assumed_flops_per_s; cluster.throughput=probe "
           f"measures it)")
    )
    if cluster.gpus_per_trial:
        cost = (f", about {cluster.gpu_hour_cost * gpu_hours:,.2f} at {cluster.gpu_hour_cost:g} per GPU-hour "
                f"(cluster.gpu_hour_cost)" if cluster.gpu_hour_cost else "")
        lines.append(f"GPU time: {gpu_hours:.3g} GPU-hours for the {n_pending} not finished{cost}")
    invalid = [t for t in trials if t.invalid is not None]
    if invalid:
        lines.append(f"invalid: {len(invalid)} trial(s) would not be valid scaling points, e.g. {invalid[0].trial_id} "
                     f"({invalid[0].shape}, D={human(invalid[0].tokens)}): {invalid[0].invalid}; a run refuses them "
                     "unless hparams.allow_invalid=true, and the fit leaves them out")
    if wall > YEAR_S:
        lines.append(f"warning: this plan would take about {duration(wall)} on {n_slots} slot(s); check sweep.budgets "
                     f"and sweep.tokens for a mistyped exponent (the largest trial needs "
                     f"{max(t.cost.c_exact for t in trials):.3g} FLOPs).")
    return "\n".join(lines)
