"""The sweep's live display: a rich panel on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from orchestrator.plan_view import duration


@dataclass
class SweepProgress:
    """Counts and FLOPs of one invocation; ETA from the FLOP throughput so far."""

    sweep: str
    total: int
    planned_flops: float
    done: int = 0
    done_flops: float = 0.0
    failed: int = 0
    running: int = 0
    skipped: int = 0
    best: dict[str, float] = field(default_factory=dict)
    """Best final eval loss per budget label."""
    started: float = field(default_factory=time.monotonic)
    running_flops: dict[tuple[str, int], float] = field(default_factory=dict)
    """FLOPs the running trials have done so far (their latest report), by (trial id, attempt)."""

    @property
    def measured_flops(self) -> float:
        """FLOPs done in this invocation: finished trials' and the running trials' progress."""
        return self.done_flops + sum(self.running_flops.values())
    forecasts: dict[str, tuple[int, float, float, float, float]] = field(default_factory=dict)
    """Running trials' live forecasts: name -> (step, measured eval loss, forecast final loss, lo, hi)."""
    forecast_wait: int = 0
    """Finished curves the forecaster still needs before it forecasts (0: none, or no trial it can forecast)."""

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed - self.running - self.skipped

    def eta(self) -> str:
        """Remaining FLOPs at the measured rate: FLOPs done so far (running trials' reports included, so the ETA
        is there from the first reports on, not only after the first trial ends) per second elapsed."""
        elapsed, done = time.monotonic() - self.started, self.measured_flops
        if done <= 0:
            return "?"
        return duration(elapsed * max(self.planned_flops - done, 0.0) / done)

    def best_by_budget(self) -> list[tuple[str, float]]:
        """(label, best loss) by budget as numbers (C=3e10 before C=1e11, which a string sort reverses), the labels
        written without '+' (C=1e10)."""
        def key(label: str) -> tuple[str, float, str]:
            kind, _, value = label.partition("=")
            try:
                return kind, float(value), label
            except ValueError:
                return kind, float("inf"), label

        return [(label.replace("e+", "e"), self.best[label]) for label in sorted(self.best, key=key)]

    def line(self) -> str:
        elapsed = duration(time.monotonic() - self.started)
        best = " ".join(f"{label}:{v:.4f}" for label, v in self.best_by_budget())
        return (f"[{self.sweep}] done {self.done + self.skipped}/{self.total} running {self.running} "
                f"failed {self.failed} pending {self.pending} | FLOPs {self.done_flops:.3g}/{self.planned_flops:.3g} "
                f"| elapsed {elapsed} eta {self.eta()}" + (f" | best {best}" if best else ""))


def forecast_rows(progress: SweepProgress, *, limit: int = 8) -> list[tuple[str, str]]:
    """One row per running trial with a forecast: its measured eval loss beside its forecast final loss."""
    rows = []
    if not progress.forecasts and progress.forecast_wait and progress.running:
        rows.append(("forecasts", f"once {progress.forecast_wait} more trial(s) finish: the finished curves set the "
                                  f"law's priors and calibrate its interval"))
    for name, (step, measured, loss, lo, hi) in sorted(progress.forecasts.items())[:limit]:
        rows.append((f"forecast {name}", f"step {step}  eval {measured:.4f}  ->  final {loss:.4f} "
                                         f"[{lo:.4f}, {hi:.4f}] (90%)"))
    return rows


class Display:
    """Live rich panel when stdout is a terminal; one log line per event otherwise."""

    def __init__(self, progress: SweepProgress, *, live: bool | None = None) -> None:
        self.progress = progress
        self.live = sys.stdout.isatty() if live is None else live
        self._live = None
        if self.live:
            from rich.live import Live  # noqa: PLC0415

            self._live = Live(self._render(), refresh_per_second=4, transient=False)
            self._live.start()

    def _render(self):
        from rich.table import Table  # noqa: PLC0415

        p = self.progress
        table = Table(title=f"sweep {p.sweep}", show_header=False)
        table.add_row("trials", f"done {p.done + p.skipped}/{p.total}  running {p.running}  failed {p.failed}  "
                                f"pending {p.pending}")
        table.add_row("FLOPs", f"{p.done_flops:.3g} of {p.planned_flops:.3g} "
                               f"({100 * p.done_flops / max(p.planned_flops, 1):.0f}%)")
        table.add_row("time", f"elapsed {duration(time.monotonic() - p.started)}  eta {p.eta()}")
        for budget, loss in p.best_by_budget():
            table.add_row(f"best {budget}", f"{loss:.4f}")
        for row in forecast_rows(p):
            table.add_row(*row)
        return table

    def event(self, message: str) -> None:
        if self._live is not None:
            self._live.console.print(message)
            self._live.update(self._render())
        else:
            print(f"{message} | {self.progress.line()}", flush=True)

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
