"""One driver per sweep: a lease in the tracking store, so two drivers of one sweep never run its trials twice.

A second `python -m orchestrator sweep=X` started while X runs (another terminal, a teammate on the same
tracking server) refuses with one sentence naming the owner (host, pid, since when). A lease whose driver
is gone is taken over: at once on the same host (its pid is dead, e.g. after `kill -9`), from another host
once it has had no heartbeat for `STALE_S`. A driver that finds its lease taken over (it stalled past
`STALE_S`) stops at its next heartbeat.

Layout, with nothing beyond MLflow's own API, so SQLite and a server behave alike: one run per experiment
tagged kind=lease. Each driver invocation claims the next *epoch* k = 1, 2, ... by logging the param
`epoch.<k>` = its token. MLflow params are write-once (the database's primary key decides, inside one
transaction: tracking.Tracker.claim), so of two drivers claiming one epoch exactly one wins: a
compare-and-set built from an insert. The holder of the newest epoch writes the tag `heartbeat.<k>` as it
runs and `released.<k>` when it stops.

The one race left is the creation of the experiment's first lease run, which no primitive makes unique:
drivers that each created one settle on the same run (claimed first, then the smallest id) after
`SETTLE_S`, and a driver that finds it claimed a run that is not that one gives its claim back.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass

from orchestrator.errors import RunFailure
from orchestrator.tracking import HEARTBEAT_S, Tracker

STALE_S = 4 * HEARTBEAT_S
"""A lease held from another host is stale after this long without a heartbeat (drivers beat every 5 s)."""
SETTLE_S = 1.0
"""After creating an experiment's first lease run: how long a racing driver gets to make its own visible."""
EPOCH = "epoch."


class SweepBusy(RunFailure):
    """Another live driver holds the sweep (exit 1: the same command succeeds once that driver is done)."""


class LeaseLost(RunFailure):
    """Another driver took this driver's lease over (this one had stalled past STALE_S)."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a sweep's lease."""

    epoch: int
    host: str
    pid: int
    since: float
    heartbeat: float
    released: bool

    def describe(self, *, now: float) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"{self.host} pid {self.pid} (since {since}, last heartbeat {max(now - self.heartbeat, 0):.0f}s ago)"


def _token() -> str:
    """Unique per claim: host | pid | claim time | random."""
    return f"{socket.gethostname()}|{os.getpid()}|{time.time():.3f}|{uuid.uuid4().hex[:8]}"


def _claimed(params: dict[str, str]) -> bool:
    return any(key.startswith(EPOCH) for key in params)


def _canonical_first(run: tuple[str, dict[str, str], dict[str, str]]) -> tuple[bool, str]:
    """The experiment's lease run is the claimed one (then the smallest id): every driver picks the same."""
    return not _claimed(run[1]), run[0]


class SweepLease:
    """The lease of one experiment: acquire() before the first write, renew() with every heartbeat, release()."""

    def __init__(self, tracker: Tracker, *, sweep: str, stale_s: float = STALE_S) -> None:
        self.tracker, self.sweep, self.stale_s = tracker, sweep, stale_s
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.run_id: str | None = None
        self.epoch = 0

    def acquire(self) -> Holder | None:
        """Hold the lease, or raise SweepBusy naming its live holder. Returns the stale holder taken over
        (None when the lease was free)."""
        for _ in range(5):
            run_id, created = self._lease_run()
            holder = self._holder(run_id)
            if holder is not None and not holder.released and self._alive(holder):
                raise self._busy(holder)
            epoch = (holder.epoch if holder is not None else 0) + 1
            token = _token()
            if self.tracker.claim(run_id, f"{EPOCH}{epoch}", token) != token:
                continue  # another driver claimed this epoch first: look again (it holds the lease now)
            self.run_id, self.epoch = run_id, epoch
            self.tracker.set_tags(run_id, {f"heartbeat.{epoch}": f"{time.time():.3f}",
                                           "holder": f"{self.host} pid {self.pid} (epoch {epoch})"})
            if created:
                time.sleep(SETTLE_S)  # a driver racing to create the first lease run has made it visible by now
                if self._lease_run()[0] != run_id:
                    self.release()
                    continue
            return holder if holder is not None and not holder.released else None
        holder = self._holder(self._lease_run()[0])
        raise self._busy(holder) if holder is not None else SweepBusy(
            f"sweep {self.sweep}: the lease in {self.tracker.uri} could not be claimed after 5 tries; retry.")

    def check(self) -> None:
        """Read-only: raise SweepBusy when a live driver holds the lease. A quick answer before Ray starts;
        acquire() still decides."""
        runs = self.tracker.lease_runs() if self.tracker.experiment_id is not None else []
        if runs:
            holder = self._holder(min(runs, key=_canonical_first)[0])
            if holder is not None and not holder.released and self._alive(holder):
                raise self._busy(holder)

    def renew(self) -> None:
        """Heartbeat; raises LeaseLost when another driver holds a newer epoch."""
        assert self.run_id is not None, "renew() before acquire()"
        holder = self._holder(self.run_id)
        if holder is None or holder.epoch != self.epoch:
            who = holder.describe(now=time.time()) if holder is not None else "another driver"
            self.run_id = None
            raise LeaseLost(f"sweep {self.sweep}: {who} took this sweep over after this driver had no heartbeat for "
                            f"{self.stale_s:.0f}s; this driver stops and its running trials are marked killed.")
        self.tracker.set_tags(self.run_id, {f"heartbeat.{self.epoch}": f"{time.time():.3f}"})

    def release(self) -> None:
        """Give the lease back (a no-op when not held, or when another driver holds it by now)."""
        run_id, self.run_id = self.run_id, None
        if run_id is None:
            return
        holder = self._holder(run_id)
        if holder is not None and holder.epoch == self.epoch:
            self.tracker.set_tags(run_id, {f"released.{self.epoch}": f"{time.time():.3f}"})

    # -- reading the lease ----------------------------------------------------------------------
    def _lease_run(self) -> tuple[str, bool]:
        """The experiment's lease run (created if there is none) and whether this call created it."""
        runs = self.tracker.lease_runs()
        created = not runs
        if created:
            self.tracker.create_lease_run()
            time.sleep(SETTLE_S)  # racing drivers' runs become visible; all then pick the same one below
            runs = self.tracker.lease_runs()
        runs.sort(key=_canonical_first)
        for run_id, params, _ in runs[1:]:
            if not _claimed(params):
                self.tracker.delete_run(run_id)  # a racing driver's spare: unclaimed, never used
        return runs[0][0], created

    def _holder(self, run_id: str) -> Holder | None:
        params, tags = self.tracker.read_run(run_id)
        epochs = [int(key.removeprefix(EPOCH)) for key in params if key.startswith(EPOCH)]
        if not epochs:
            return None
        epoch = max(epochs)
        try:
            host, pid, since, _ = params[f"{EPOCH}{epoch}"].split("|")
            holder = (host, int(pid), float(since), float(tags.get(f"heartbeat.{epoch}", since)))
        except ValueError:  # not a token this module wrote: an unknown holder, stale since forever
            holder = ("?", 0, 0.0, 0.0)
        host, pid, since, beat = holder
        return Holder(epoch=epoch, host=host, pid=pid, since=since, heartbeat=max(beat, since),
                      released=f"released.{epoch}" in tags)

    def _alive(self, holder: Holder) -> bool:
        """On this host: its pid runs (and beats); elsewhere: it beat within stale_s."""
        if holder.host == self.host:
            if holder.pid == self.pid:
                return False  # this very process, after an earlier run that could not release: not a rival
            try:
                os.kill(holder.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass  # another user's process: alive
        return time.time() - holder.heartbeat < self.stale_s

    def _busy(self, holder: Holder) -> SweepBusy:
        return SweepBusy(f"sweep {self.sweep} is already being run by {holder.describe(now=time.time())} in "
                         f"{self.tracker.uri}: wait for that driver to finish (or stop it), then rerun; a lease "
                         f"without a heartbeat for {self.stale_s:.0f}s is taken over.")
