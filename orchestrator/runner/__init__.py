"""Run a sweep's pending trials on Ray and record every attempt in MLflow.

The driver owns every MLflow write; trials stream their reports back through a Ray queue, so the
store can be a SQLite file on the head node only. Trials are submitted as Ray tasks placed by their
resources (CPUs with a matching torch thread count, fractional GPUs, memory); a slot that frees is
refilled at once (one queued task per slot keeps Ray's dispatch busy, no batch barriers).

Failure kinds and their policies:
  crashed   the trainer raised: retried up to cluster.max_retries times, traceback kept as an artifact
  oom       out of memory (reported by the trainer or Ray's memory monitor): a result, not retried
  diverged  NaN/inf or a loss spike (reported by the trainer): a result, not retried
  lost      the worker or its node died: rescheduled (does not use up crash retries); a worker that dies
            while its node stays up is the trainer's own death (os._exit, a segfault): crashed with the exit
            code or signal in words (orchestrator/faults.py) after one retry; one that leaves no word (SIGKILL)
            is rescheduled as lost twice (its node may be dying), then crashed
  timed_out the trial ran past cluster.trial_timeout_s: stopped, not retried (a hung trainer hangs again)
  killed    the driver was interrupted: marked killed; the next invocation reruns it
A new invocation reaps runs left RUNNING by a dead driver, then runs only what is not finished.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray._private import ray_constants
from ray.util.queue import Empty, Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator.runner import attach
from orchestrator.runner.train import TrainWorkerLost, execute_on_train
from orchestrator.config import Config
from orchestrator.faults import MAX_REPORTS_PER_S, death_reason, death_witness, thin_reports, trial_time_limit
from orchestrator.forecast.early_stop import Point, stoppable
from orchestrator.forecast.live import LiveForecaster, Trip
from orchestrator.forks import checkpoint_root
from orchestrator.lease import SweepLease
from orchestrator.planner import Trial
from orchestrator.preflight import check_gang, check_resources
from orchestrator.progress import Display, SweepProgress
from orchestrator.tracking import Tracker, open_sweep_store
from orchestrator.trial_source import FixedList, TrialSource
from trainers.api import RESULTS, ContractError, Status, check_metrics, check_result, nonfinite_loss

LOST_ERRORS = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
               ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError,
               ray.exceptions.OwnerDiedError, ray.exceptions.RaySystemError, TrainWorkerLost)
MAX_LOST = 5
FLUSH_S = 1.0
LOG_S = 2.0
DRAIN_S = 0.2
"""The report queue is read at least this often, and in every round where a result may have messages before it."""
COMMIT_S = 0.1
"""A round's writes are committed at its end once COMMIT_S has passed since the last commit (else with a later
round's), and always when nothing is left in flight: quick trials end in every round, and a commit costs about as
much for one run as for twenty. What a round decided acts only after its commit (tracking.RunWriter)."""


class _Reporter:
    """The trainer's report callback inside a Ray worker: buffers, streams to the driver's queue.

    Streamed puts are fire-and-forget (one caller's calls to an actor run in order). The reports not
    yet streamed when the trial ends ride back with its result, so a finished trial costs no blocking
    round trip; a trial that raises flushes them with a blocking put before its error propagates.
    A call that breaks the contract (trainers/api.py check_metrics) raises ContractError and is kept as
    `violation`: the trial is then crashed with that reason however the trainer handles the error. Beyond
    MAX_REPORTS_PER_S reports a second, routine reports are thinned (orchestrator/faults.py).
    """

    def __init__(self, queue: Queue, key: tuple[str, int]) -> None:
        self.queue, self.key, self.buffer, self.last = queue, key, [], time.monotonic()
        self.violation: str | None = None

    def send(self, message: dict[str, Any]) -> None:
        self.queue.actor.put_nowait.remote(message)

    def __call__(self, metrics: dict[str, Any]) -> None:
        broken = check_metrics(metrics)
        if broken is not None:
            self.violation = self.violation or broken
            raise ContractError(broken)
        self.buffer.append(dict(metrics))
        if len(self.buffer) > 10 * MAX_REPORTS_PER_S * FLUSH_S:  # a flood: bound the buffer between sends
            self.buffer = self._thinned()
        if time.monotonic() - self.last > FLUSH_S:
            self.send({"kind": "report", "key": self.key, "metrics": self._thinned()})
            self.buffer, self.last = [], time.monotonic()

    def _thinned(self) -> list[dict[str, Any]]:
        limit = int(MAX_REPORTS_PER_S * max(time.monotonic() - self.last, FLUSH_S))
        return thin_reports(self.buffer, limit=limit)

    def tail(self) -> list[dict[str, Any]]:
        """The reports not yet streamed (thinned like the streamed ones)."""
        return self._thinned()

    def flush(self) -> None:
        self.queue.put({"kind": "report", "key": self.key, "metrics": self._thinned()})
        self.buffer = []


def execute_trial(config: dict[str, Any], *, key: tuple[str, int], target: str, queue: Queue,
                  run_dir: str | None, threads: int, device: str, gpu_fraction: float = 0.0) -> dict[str, Any]:
    """Body of one Ray task: announce, train; returns {"result", "reports" (the tail), "meta"}.

    A trial holding a fraction of a GPU is limited to that share of its memory (trainers/device.py);
    GPU tasks run in a fresh worker each, so the setting dies with the trial.
    """
    from trainers.api import load_trainer  # noqa: PLC0415

    if 0.0 < gpu_fraction < 1.0:
        from trainers.device import GPU_MEMORY_FRACTION_ENV  # noqa: PLC0415

        os.environ[GPU_MEMORY_FRACTION_ENV] = str(gpu_fraction)

    reporter = _Reporter(queue, key)
    meta = {"host": socket.gethostname(), "device": device, "node": ray.get_runtime_context().get_node_id(),
            "started": time.time()}
    reporter.send({"kind": "start", "key": key, **meta})
    try:
        with death_witness(run_dir, key[1]):  # os._exit or a fatal signal leaves a note (orchestrator/faults.py)
            result = load_trainer(target)(config, reporter, run_dir=run_dir, device=device, threads=threads)
    except BaseException:
        if reporter.violation is None:
            reporter.flush()
            raise
        result = None  # the trainer let report()'s ContractError through: the violation is the outcome
    return {"result": result, "reports": reporter.tail(), "meta": meta, "violation": reporter.violation,
            "ended": time.time()}


@dataclass
class _Attempt:
    trial: Trial
    attempt: int
    lost: int = 0
    run_id: str | None = None
    started: float = 0.0
    reports: list[dict[str, Any]] = field(default_factory=list)
    """Reports received but not yet logged."""
    logged: float = 0.0
    ref: ray.ObjectRef | None = None
    submitted: float = 0.0
    closed: bool = False
    """The attempt's run has its final status (late streamed reports are logged to it directly)."""
    pruned: dict[str, Any] | None = None
    """The report at which the source pruned this attempt (None: not pruned)."""
    deaths: int = 0
    """Earlier attempts of the trial whose worker process died while its node stayed up."""
    node: str = "?"
    run_dir: str | None = None
    timed_out: float | None = None
    """The limit (s) past which the driver stopped this attempt (None: not stopped)."""
    tripped: Trip | None = None
    """The forecaster's divergence tripwire that stopped this attempt (orchestrator/forecast/live.py)."""
    trip_report: dict[str, Any] = field(default_factory=dict)
    last_report: dict[str, Any] | None = None
    """The latest report the forecaster saw (where sweep.early_stop records the attempt stopped)."""
    early_stop: str | None = None
    """Why sweep.early_stop stopped this attempt (orchestrator/forecast/early_stop.py; None: not stopped)."""
    ended: float | None = None
    """When the worker returned (its wall clock, s): the run's end time. None: the driver's clock when it closes."""


EARLY_STOP_FROM = 0.5
"""sweep.early_stop trusts a running trial's forecast from this fraction of its planned steps on."""


def _meta_of(ref: ray.ObjectRef) -> dict[str, str] | None:
    """Where a finished task ran, from its payload (None when it raised)."""
    try:
        return ray.get(ref)["meta"]
    except Exception:  # noqa: BLE001  (a failed task has no payload; its error is handled by the caller)
        return None


def _lost_words(err: BaseException) -> str:
    """Why an attempt was lost, in one line: a task's own lost error (a multi-worker trial's TrainWorkerLost) speaks
    through its cause, not the `ray::task() (pid=..., ip=...)` header Ray puts first."""
    cause = getattr(err, "cause", None) if isinstance(err, ray.exceptions.RayTaskError) else None
    text = str(cause if cause is not None else err).strip()
    return (text.splitlines() or [type(err).__name__])[0]


def order_trials(trials: list[Trial], order: str) -> list[Trial]:
    if order == "budget":
        return sorted(trials, key=lambda t: (t.budget if t.budget is not None else t.cost.c_exact, t.cost.c_exact))
    if order == "cost":
        return sorted(trials, key=lambda t: t.cost.c_exact)
    return list(trials)


def connect_ray(config: Config) -> None:
    """A quiet local instance (dashboard off) listening on loopback only, or an existing cluster at
    cluster.address, attached as Ray's CLI does (token authentication included: orchestrator/runner/attach.py)."""
    cluster = config.cluster
    pythonpath = os.pathsep.join(p for p in (str(Path.cwd()), os.environ.get("PYTHONPATH", "")) if p)
    runtime_env: dict[str, Any] = {"env_vars": {"PYTHONPATH": pythonpath}}
    shipped = user_code(config.trainer.target)
    if shipped:  # Ray uploads it once and puts it first on every worker's path, on every node
        runtime_env["py_modules"] = shipped
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                                  configure_logging=True, runtime_env=runtime_env)
    if cluster.address:
        head = attach.resolve(cluster.address)  # one sentence (exit 2) for an unreachable or refusing head
        with _loopback_node() if head.loopback else contextlib.nullcontext():
            ray.init(address=head.address, **kwargs)
    else:
        # address="local": always a new instance of our own. Without it, ray.init joins whatever cluster another
        # process on this machine started (found via /tmp/ray/ray_current_cluster), and then refuses num_cpus.
        with _loopback_node():
            ray.init(address="local", num_cpus=cluster.num_cpus or os.cpu_count(), **kwargs)


def user_code(target: str, *, cwd: Path | None = None) -> list[str]:
    """The user's trainer code that Ray must ship to its workers: the top-level package (folder) or module (file)
    of `trainer.target` when it lives in the folder the sweep runs from. Other nodes of a cluster do not have that
    folder; Ray's runtime environment (`py_modules`) carries it to them. Installed code (ours, site-packages) is
    not shipped: it must be installed on every node."""
    top = target.partition(":")[0].split(".")[0]
    if top in ("orchestrator", "trainers"):
        return []
    cwd = (cwd or Path.cwd()).resolve()
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    places = [Path(p).resolve() for p in list(spec.submodule_search_locations or []) or [spec.origin] if p]
    return [str(p) for p in places
            if p.exists() and p.is_relative_to(cwd) and not {"site-packages", "dist-packages"} & set(p.parts)]


@contextlib.contextmanager
def _loopback_node():
    """Start the local instance with node IP 127.0.0.1, so that nothing it starts listens beyond this machine.

    Ray binds its gRPC servers (GCS, raylet, object manager, workers), the runtime-env and dashboard agents
    and its Prometheus metrics endpoints (dashboard agent, dashboard head, autoscaler monitor) to loopback
    exactly when the node IP is loopback, and to the node IP or all interfaces otherwise (ray 2.60:
    dashboard/head.py, autoscaler/_private/monitor.py, ray-project/ray#55484). `ray.init(_node_ip_address=
    "127.0.0.1")` does not get there: ray.init rewrites a loopback address to the routable one
    (services.resolve_ip_for_localhost). Ray's own loopback mode does: with ray_constants.ENABLE_RAY_CLUSTER
    off (the RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 setting, read once at import), get_node_ip_address()
    answers 127.0.0.1. It is switched on for this call only: joining an existing cluster needs the routable
    address. tests/test_network.py checks the socket table.
    """
    previous = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous


def node_resources() -> list[dict[str, float]]:
    """Each alive node's resource totals (CPU, GPU, memory in bytes, ...)."""
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def slot_count(config: Config) -> int:
    """Trials that fit at once on the cluster's resources (and under the concurrency cap)."""
    cluster, resources = config.cluster, ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // cluster.cpus_per_trial)
    if cluster.gpus_per_trial:
        slots = min(slots, int(resources.get("GPU", 0) / cluster.gpus_per_trial + 1e-9))
    if cluster.memory_per_trial_gb:
        slots = min(slots, int(resources.get("memory", 0) / (cluster.memory_per_trial_gb * 2**30)))
    if cluster.max_concurrent:
        slots = min(slots, cluster.max_concurrent)
    return max(slots, 1)


def run_sweep(config: Config, *, trials: list[Trial], display_live: bool | None = None,
              source: TrialSource | None = None) -> int:
    """Plan -> check -> lease -> reap -> run pending -> record. Returns 0 when every trial reached a result.

    With a `source`, trials come from it as it decides (`trials` is ignored and the source skips what
    is already done); without one, the pending `trials` run in cluster.order. Nothing is written to the
    store until Ray is up and the cluster can run a trial at all (preflight.check_resources), and then
    only under the sweep's lease (lease.py): a second driver of the same sweep refuses instead of
    running every trial again.
    """
    sweep = config.sweep.name
    # MLflow prints two "View run ... at: URL" lines on every run's end against a server; the progress panel and
    # the final links say where the runs are (mlflow/tracking/_tracking_service/client.py). Set it to false to
    # have them back.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    reader = open_sweep_store(config, create=False)
    if reader is not None:
        SweepLease(reader, sweep=sweep).check()  # a driver of this sweep is running: say so before starting Ray
    if (source.done() if source is not None else
            not _pending(config, trials, reader.statuses() if reader is not None else {})):
        print(f"sweep {sweep}: {len(trials)} trials, {len(trials)} already done, 0 to run; tracking "
              f"{reader.uri if reader is not None else config.tracking.uri}", flush=True)
        return 0
    connect_ray(config)
    try:
        check_resources(config.cluster, node_resources())
        check_gang(config.cluster, node_resources(), workers=_most_workers(config, trials, source))
        tracker = open_sweep_store(config, create=True)
        assert tracker is not None
        lease = SweepLease(tracker, sweep=sweep)
        taken = lease.acquire()
        try:
            return _run_leased(config, trials, tracker=tracker, lease=lease, source=source, taken=taken,
                               display_live=display_live)
        finally:
            try:
                lease.release()
            except Exception as err:  # noqa: BLE001  (the store went away: the lease goes stale by itself)
                print(f"warning: the sweep lease could not be released ({type(err).__name__}: {err}); the next "
                      f"driver takes it over once it is stale.", file=sys.stderr)
    finally:
        ray.shutdown()


def _most_workers(config: Config, trials: list[Trial], source: TrialSource | None) -> int:
    """The largest gang the sweep will ask for (a source's trials are not known yet: the rule's largest)."""
    cluster = config.cluster
    if source is not None or not trials:
        return max([cluster.workers_per_trial, *cluster.workers_rule.workers])
    return max(cluster.workers_for(C=t.budget if t.budget is not None else t.cost.c_exact, N=t.cost.n_total,
                                   D=t.tokens) for t in trials)


def _pending(config: Config, trials: list[Trial], statuses: dict[str, str]) -> list[Trial]:
    """The trials without a result yet, in cluster.order (diverged and oom count as results unless
    cluster.retry_results)."""
    skip = set(RESULTS) - ({Status.DIVERGED, Status.OOM} if config.cluster.retry_results else set())
    return order_trials([t for t in trials if statuses.get(t.trial_id) not in skip], config.cluster.order)


def _run_leased(config: Config, trials: list[Trial], *, tracker: Tracker, lease: SweepLease,
                source: TrialSource | None, taken, display_live: bool | None) -> int:
    """The part of run_sweep that holds the lease: reap, re-read what is done, run, record."""
    sweep = config.sweep.name
    reaped = tracker.reap_stale()
    todo = _pending(config, trials, tracker.statuses())  # again: another driver may have finished some meanwhile
    if source is not None:
        trials, todo = [], []
    progress = SweepProgress(sweep=sweep, total=len(trials), planned_flops=sum(t.cost.c_exact for t in todo),
                             skipped=len(trials) - len(todo))
    took = f"; took over the lease of {taken.host} pid {taken.pid} (gone)" if taken is not None else ""
    outlook = source.outlook() if source is not None else None  # a source that plans in waves says what is planned
    print(f"sweep {sweep}: " + (outlook or f"{len(trials)} trials, {len(trials) - len(todo)} already done, "
                                           f"{len(todo)} to run")
          + (f"; reaped {reaped} stale run(s) as killed" if reaped else "") + took + f"; tracking {tracker.uri}",
          flush=True)
    if not todo and source is None:
        return 0
    parent = tracker.start_parent(sweep=sweep, config=asdict(config), n_trials=len(trials))
    progress.started = time.monotonic()  # time trials, not Ray's start
    display = Display(progress, live=display_live)
    # Ctrl-C and SIGTERM stop the sweep cleanly, also when the driver inherited SIGINT ignored (a background job
    # of a non-interactive shell, `nohup`, some CI runners start processes that way).
    # The handler also leaves a flag that the loop checks every round: a KeyboardInterrupt raised inside a
    # finalizer or a weakref callback (SQLAlchemy's, for one) is swallowed by Python, and the sweep would run on.
    _INTERRUPTED.clear()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    previous_int = signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        loop = TrialLoop(config, tracker=tracker, parent=parent, display=display, lease=lease)
        loop.planned = trials if source is None else []
        ok = loop.run(todo, source=source)
        tracker.end_parent(parent, status="FINISHED" if ok else "FAILED", summary=_summary(progress))
        return 0 if ok else 1
    except KeyboardInterrupt:
        tracker.end_parent(parent, status="KILLED", summary=_summary(progress))
        print("interrupted: running trials were marked killed; rerun the same command to resume.", flush=True)
        return 130
    except BaseException:  # a lost lease, a store that went away, a bug: the parent is never left RUNNING
        with contextlib.suppress(Exception):
            tracker.end_parent(parent, status="FAILED", summary=_summary(progress))
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        display.close()


_INTERRUPTED = threading.Event()
"""Set by Ctrl-C or SIGTERM while a sweep runs; TrialLoop.run raises KeyboardInterrupt at its next round."""


def _raise_interrupt(signum, frame):  # noqa: ARG001
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def _summary(progress: SweepProgress) -> dict[str, float]:
    return {"trials_finished": progress.done, "trials_failed": progress.failed,
            "flops_done": progress.done_flops, "wall_s": time.monotonic() - progress.started}


class TrialLoop:
    """The driver's event loop: submit into free slots, stream reports into runs, handle results."""

    def __init__(self, config: Config, *, tracker: Tracker, parent: str, display: Display,
                 lease: SweepLease | None = None) -> None:
        self.config, self.tracker, self.parent, self.display, self.lease = config, tracker, parent, display, lease
        self.progress = display.progress
        # The report queue lives on the driver's node: if a worker node dies, no report is lost with it.
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        self.queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        cluster = config.cluster
        self.device = "cuda" if cluster.gpus_per_trial > 0 else "cpu"
        # A GPU trial gets a fresh worker process (max_calls=1, Ray's own default for
        # @ray.remote(num_gpus>0), which .options() does not apply): a reused worker would keep the
        # CUDA context of the GPU Ray gave its previous task (ray-project/ray#29624) and the memory
        # torch's caching allocator still holds.
        self.task = ray.remote(max_calls=1 if cluster.gpus_per_trial > 0 else 0)(execute_trial).options(
            num_cpus=cluster.cpus_per_trial, num_gpus=cluster.gpus_per_trial,
            memory=int(cluster.memory_per_trial_gb * 2**30) or None, max_retries=0, retry_exceptions=False)
        # A trial of several workers: a driving task without resources of its own; Ray Train reserves the workers
        # as one placement group (orchestrator/runner/train.py).
        self.gang_task = ray.remote(execute_on_train).options(num_cpus=0, max_retries=0, retry_exceptions=False)
        self.inflight: dict[ray.ObjectRef, _Attempt] = {}
        self.drained = self.committed = 0.0
        """When the report queue was last read (_drain)."""
        self.by_key: dict[tuple[str, int], _Attempt] = {}
        self.all_results = True
        self.slowest_rate: float | None = None
        """The slowest FLOP/s of a trial finished in this invocation (the time limits' rate)."""
        self.forecaster = LiveForecaster()
        self.planned: list[Trial] = []
        """The sweep's planned trials (sweep.early_stop checks only budgets whose every trial runs here)."""
        self.finished_loss: dict[str, float | None] = {}
        """trial_id -> final eval loss of the trials ended in this invocation (None: no loss; sweep.early_stop)."""
        self.forecasted = False
        """A forecast changed this round (sweep.early_stop is checked at most once per round)."""
        self.writer = tracker.writer()
        """The trial runs' writes, committed at the end of a round (COMMIT_S; tracking.RunWriter); outcomes act after
        their commit."""

    def run(self, todo: list[Trial], *, source: TrialSource | None = None) -> bool:
        """Run `todo` (or whatever `source` feeds); True when every trial reached a result."""
        self.source = FixedList(todo) if source is None else source
        self.todo_ids = {t.trial_id for t in todo}
        """The trials this invocation runs (sweep.early_stop: a budget with any other trial is skipped)."""
        waiting: list[_Attempt] = []  # retries, ahead of new trials
        slots, checked = slot_count(self.config), time.monotonic()
        try:
            while True:
                if _INTERRUPTED.is_set():
                    raise KeyboardInterrupt
                if time.monotonic() - checked > 5:
                    slots, checked = slot_count(self.config), time.monotonic()
                    self.tracker.heartbeat(self.parent)
                    if self.lease is not None:
                        self.lease.renew()  # LeaseLost when another driver took the sweep over
                while waiting and self._load() < 2 * slots:
                    self._submit(waiting.pop(0))
                free = 2 * slots - self._load()
                if free > 0 and not self.source.done():
                    fed = self.source.next_trials(free)
                    if source is not None:
                        self.progress.total += len(fed)
                        self.progress.planned_flops += sum(self._flops(t) for t in fed)
                    for trial in fed:
                        self._submit(_Attempt(trial, 1))
                if not (waiting or self.inflight):
                    break  # the source is done, or has nothing to give while nothing runs
                refs = list(self.inflight)
                ready, rest = ray.wait(refs, num_returns=1, timeout=0.2)
                if ready and rest:  # take every result that is ready, not one per round
                    ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
                if self._drain_due(ready):
                    self._drain()
                self._stop_overdue()
                for ref in ready:
                    retry = self._finish(ref, self.inflight.pop(ref))
                    if retry is not None:
                        waiting.insert(0, retry)
                self._early_stop()  # after the finished ones left: a trial that finished is never stopped
                self._commit()  # the round's runs in one transaction; then the outcomes count
                for trial, status, reason in self.source.take_settled():
                    self._record_unrun(trial, status, reason)
                self._commit()
                self.display.refresh()
        except KeyboardInterrupt:
            self._kill_all("the driver was interrupted")
            raise
        except BaseException as err:  # nothing is left RUNNING: the next invocation reruns these trials
            with contextlib.suppress(Exception):
                self._kill_all(f"the driver stopped: {type(err).__name__}: {err}")
            raise
        return self.all_results

    def workers(self, trial: Trial) -> int:
        """The trial's workers (cluster.workers_per_trial, or cluster.workers_rule by its C, N or D)."""
        return self.config.cluster.workers_for(C=trial.budget if trial.budget is not None else trial.cost.c_exact,
                                               N=trial.cost.n_total, D=trial.tokens)

    def _load(self) -> int:
        """Worker slots the trials in flight take (a trial of k workers takes k)."""
        return sum(self.workers(a.trial) for a in self.inflight.values())

    def _submit(self, attempt: _Attempt) -> None:
        trial, cluster = attempt.trial, self.config.cluster
        key = (trial.trial_id, attempt.attempt)
        # A fork resumes in its fork-point folder (forks.py); any other trial in its own.
        run_dir = self.source.run_dir(trial) or str(checkpoint_root(self.config) / trial.trial_id)
        workers = self.workers(trial)
        if workers > 1:
            ref = self.gang_task.remote(
                trial.config, key=key, target=trial.config["trainer"]["target"], queue=self.queue, run_dir=run_dir,
                threads=cluster.cpus_per_trial, device=self.device, workers=workers,
                gpus_per_worker=cluster.gpus_per_trial, reporter=_Reporter, parallel=cluster.parallel,
                storage=str((checkpoint_root(self.config) / "_ray_train").resolve()))
        else:
            ref = self.task.remote(trial.config, key=key, target=trial.config["trainer"]["target"], queue=self.queue,
                                   run_dir=run_dir, threads=cluster.cpus_per_trial, device=self.device,
                                   gpu_fraction=cluster.gpus_per_trial)
        attempt.ref, attempt.run_dir, attempt.submitted = ref, run_dir, time.monotonic()
        self.inflight[ref] = attempt
        self.by_key[key] = attempt

    def _commit(self) -> None:
        """Commit the writes so far (COMMIT_S), and act on what they decided."""
        if not self.inflight or time.monotonic() - self.committed >= COMMIT_S:
            self.writer.commit()
            self.committed = time.monotonic()

    def _drain_due(self, ready: list[ray.ObjectRef]) -> bool:
        """Read the queue now? Every DRAIN_S, and before any result whose trial may have streamed reports or
        flushed them before its error: one in flight for FLUSH_S or more (a trial's reporter streams only after
        FLUSH_S), or one that failed. A trial that finished sooner has sent only its start message, and its reports
        rode back with its result: reading the queue (two round trips to its actor) can wait."""
        now = time.monotonic()
        return now - self.drained >= DRAIN_S or any(
            now - self.inflight[ref].submitted >= FLUSH_S or _meta_of(ref) is None for ref in ready)

    def _drain(self) -> None:
        self.drained = time.monotonic()
        try:
            messages = self.queue.get_nowait_batch(self.queue.size())
        except Empty:
            return
        for message in messages:
            attempt = self.by_key.get(tuple(message["key"]))
            if attempt is None:
                continue
            if message["kind"] == "start":
                if attempt.run_id is None:  # not already opened by an early result
                    self._open_run(attempt, host=message["host"], device=message["device"], node=message["node"],
                                       started=message.get("started"))
                elif attempt.node == "?":  # opened by an early result: now the driver knows where it ran
                    attempt.node = message["node"]
            elif attempt.closed:  # streamed before the trial ended, arrived after its result
                self.writer.log_reports(attempt.run_id, message["metrics"])
            else:
                attempt.reports.extend(message["metrics"])
                self._note_progress(attempt, message["metrics"])
                for metrics in message["metrics"]:
                    self._forecast(attempt, metrics)
                    if attempt.pruned is None and attempt.ref in self.inflight and \
                            self.source.on_report(attempt.trial, metrics):
                        attempt.pruned = metrics
                        ray.cancel(attempt.ref, force=True)
        now = time.monotonic()
        for attempt in self.inflight.values():
            # Live metrics at most every LOG_S per run; whatever is left rides on the final batch.
            if attempt.reports and attempt.run_id is not None and now - attempt.logged > LOG_S:
                self.writer.log_reports(attempt.run_id, attempt.reports)
                attempt.reports, attempt.logged = [], now

    def _open_run(self, attempt: _Attempt, *, host: str, device: str, node: str = "?",
                  started: float | None = None) -> None:
        """Open the attempt's run; `started` is when its worker began (its wall clock, s), the run's start time (the
        driver hears of a start later, and a run's times are what the UI and the throughput figures read)."""
        trial = attempt.trial
        attempt.started = attempt.logged = time.monotonic()
        attempt.node = node
        attempt.run_id = self.writer.open_run(
            parent_id=self.parent, sweep=self.config.sweep.name, name=trial.name, trial_id=trial.trial_id,
            attempt=attempt.attempt, config=trial.config, derived=trial.record(), host=host, device=device, node=node,
            tags=self.source.tags(trial), start_ms=None if started is None else int(started * 1000))
        self.progress.running += 1
        self.source.on_start(trial, attempt.run_id)

    def _finish(self, ref: ray.ObjectRef, attempt: _Attempt) -> _Attempt | None:
        """Record one finished task; returns the next attempt when the policy retries."""
        if attempt.run_id is None:  # its start message is still on the way, or it failed before sending one
            meta = _meta_of(ref) or {"host": "?", "device": self.device, "node": "?"}
            self._open_run(attempt, host=meta["host"], device=meta["device"], node=meta["node"],
                           started=meta.get("started"))
        self.progress.running -= 1
        trial, retries = attempt.trial, self.config.cluster.max_retries
        if attempt.pruned is not None:  # cancelled by the source (or finished first): a result either way
            return self._end_pruned(attempt)
        if attempt.timed_out is not None and _meta_of(ref) is None:  # stopped by the driver (a finished one counts)
            return self._end(attempt, Status.TIMED_OUT, reason=f"it ran past its limit of {attempt.timed_out:.0f} s "
                                                             f"(cluster.trial_timeout_s) and was stopped")
        if attempt.tripped is not None:  # stopped by the forecaster's divergence tripwire
            return self._end_tripped(attempt)
        try:
            payload = ray.get(ref)
        except ray.exceptions.OutOfMemoryError as err:  # Ray's memory monitor killed the worker
            return self._end(attempt, Status.OOM, reason=str(err).strip().splitlines()[0])
        except LOST_ERRORS as err:
            died, retry = self._died(attempt, err)
            if died:
                return retry
            if attempt.lost < MAX_LOST:
                self._end(attempt, Status.LOST, reason=_lost_words(err), final=False)
                return _Attempt(trial, attempt.attempt + 1, lost=attempt.lost + 1, deaths=attempt.deaths)
            return self._end(attempt, Status.LOST, reason=f"lost {MAX_LOST + 1} times: {err}")
        except ray.exceptions.RayTaskError as err:
            trace = str(err)
            reason = trace.strip().splitlines()[-1]
            crashes = attempt.attempt - attempt.lost
            if crashes <= retries:
                self._end(attempt, Status.CRASHED, reason=f"{reason} (retry {crashes}/{retries})", traceback=trace,
                          final=False)
                return _Attempt(trial, attempt.attempt + 1, lost=attempt.lost, deaths=attempt.deaths)
            return self._end(attempt, Status.CRASHED, reason=reason, traceback=trace)
        attempt.ended = payload.get("ended")
        # The tail of the reports came back with the result: the source sees them as if streamed, so a
        # trial that finished before a prune could reach it is recorded as the search decided.
        for metrics in payload["reports"]:
            self._forecast(attempt, metrics)
            attempt.reports.append(metrics)
            if attempt.pruned is None and self.source.on_report(trial, metrics):
                attempt.pruned = metrics
        if attempt.pruned is not None:
            return self._end_pruned(attempt)
        result = payload["result"]
        broken = payload.get("violation") or check_result(result)
        if broken is not None:  # a plug-in trainer broke the contract: the same would happen again, so no retry
            target = trial.config["trainer"]["target"]
            return self._end(attempt, Status.CRASHED, reason=f"trainer.target={target} broke the trainer contract "
                                                        f"(trainers/api.py): {broken}")
        if result["status"] == Status.FINISHED and nonfinite_loss(result):  # NaN is no finished point
            return self._end(attempt, Status.DIVERGED, result=result, reason=nonfinite_loss(result))
        return self._end(attempt, result["status"], result=result, reason=result.get("reason"))

    def _died(self, attempt: _Attempt, err: Exception) -> tuple[bool, _Attempt | None]:
        """A worker that died while its node stayed up (os._exit, a fatal signal): the trainer's own death,
        retried once (if cluster.max_retries allows), then recorded as crashed. A death without a note (SIGKILL)
        on a node listed alive is rescheduled as lost twice (a dying node is still listed alive for a while),
        then crashed. Returns (True, the retry or None) when it handled it, (False, None) for a lost node (or a
        worker death the driver cannot yet tell from one): the lost policy applies."""
        if not isinstance(err, ray.exceptions.WorkerCrashedError):
            return False, None
        words = death_reason(attempt.run_dir, attempt.attempt)
        if words is None:
            if attempt.node == "?":  # its start message may still be queued: it says which node ran it
                self._drain()
            nodes = ray.nodes()
            # Where it ran (unknown when it died before its start message left): its node, or else every node, alive
            up = (attempt.node in {n["NodeID"] for n in nodes if n.get("Alive")} if attempt.node != "?"
                  else all(n.get("Alive") for n in nodes))
            if not up or attempt.deaths < 2:  # a node that is dying may still be listed alive:
                attempt.deaths += up          # two silent deaths are rescheduled as lost first
                return False, None
            words = ("the trainer's worker process died while its node stayed up, without an exit code or "
                     "signal it could record (SIGKILL, e.g. the kernel's out-of-memory killer, or an exit from "
                     "native code)")
        if attempt.deaths < min(1, self.config.cluster.max_retries):
            self._end(attempt, Status.CRASHED, reason=f"{words}; retrying once", final=False)
            return True, _Attempt(attempt.trial, attempt.attempt + 1, lost=attempt.lost, deaths=attempt.deaths + 1)
        tries = f" (attempt {attempt.deaths + 1} of {attempt.deaths + 1})" if attempt.deaths else ""
        return True, self._end(attempt, Status.CRASHED, reason=words + tries)

    def _stop_overdue(self) -> None:
        """Stop every running attempt past its wall-clock limit (cluster.trial_timeout_s); _finish records it."""
        now, configured = time.monotonic(), self.config.cluster.trial_timeout_s
        for ref, attempt in self.inflight.items():
            if attempt.run_id is None or attempt.timed_out is not None or attempt.pruned is not None:
                continue
            limit = trial_time_limit(self._flops(attempt.trial), configured=configured, rate=self._slowest_rate())
            if limit is not None and now - attempt.started > limit:
                attempt.timed_out = limit
                ray.cancel(ref, force=True)

    def _slowest_rate(self) -> float:
        """The slowest FLOP/s of a trial finished in this invocation (before any: cluster.assumed_flops_per_s)."""
        return self.slowest_rate or self.config.cluster.assumed_flops_per_s

    def _end_pruned(self, attempt: _Attempt) -> None:
        step = attempt.pruned.get("step")
        result = {"flops": float(attempt.pruned.get("flops", 0.0)), "tokens": attempt.pruned.get("tokens", 0),
                  "steps": step or 0, "pruned_eval_loss": attempt.pruned.get("eval_loss")}
        reason = (f"early stop: {attempt.early_stop} (at step {step})" if attempt.early_stop is not None
                  else f"pruned by the search at step {step}")
        return self._end(attempt, Status.PRUNED, result=result, reason=reason)

    def _end(self, attempt: _Attempt, status: str, *, result: dict[str, Any] | None = None,
             reason: str | None = None, traceback: str | None = None, final: bool = True) -> None:
        """Close the attempt's run; count it (once the round is committed) unless another attempt follows."""
        trial = attempt.trial
        self.progress.running_flops.pop((trial.trial_id, attempt.attempt), None)
        self._forecast_end(attempt, status)
        self.writer.close_run(attempt.run_id, status=status, result=result, reason=reason and reason[:500],
                              traceback=traceback, reports=attempt.reports,
                              end_ms=None if attempt.ended is None else int(attempt.ended * 1000))
        attempt.reports, attempt.closed = [], True
        ended = time.monotonic()
        self.writer.after_commit(lambda: self._count(attempt, status, result=result, reason=reason, final=final,
                                                     ended=ended))

    def _count(self, attempt: _Attempt, status: str, *, result: dict[str, Any] | None, reason: str | None,
               final: bool, ended: float) -> None:
        """An attempt's outcome, once its run is in the store: the source told, the progress counted."""
        trial = attempt.trial
        if not final:
            self.display.event(f"{status:8s} {trial.name}: {reason}; rescheduled")
            return None
        self.source.on_result(trial, Status(status), result)
        if status == Status.PRUNED:  # a result: only the FLOPs up to the pruning point count as spent
            self.progress.done += 1
            self.progress.done_flops += (result or {}).get("flops", 0.0)
            self.finished_loss[trial.trial_id] = None
            self.display.event(f"pruned   {trial.name}: {reason}")
            return None
        self.progress.done_flops += self._flops(trial)
        if status != Status.FINISHED:
            self.finished_loss[trial.trial_id] = None
            self.progress.failed += 1
            self.all_results = self.all_results and status in RESULTS
            self.display.event(f"{status:8s} {trial.name}: {reason}")
            return None
        self.progress.done += 1
        if attempt.started and (result or {}).get("flops"):  # this invocation's throughput, for time limits
            rate = result["flops"] / max(ended - attempt.started, 1e-3)
            self.slowest_rate = min(rate, self.slowest_rate or rate)
        loss = (result or {}).get("final_eval_loss")
        label = f"C={trial.budget:.3g}" if trial.budget is not None else f"D={trial.tokens:.3g}"
        if loss is not None:
            self.finished_loss[trial.trial_id] = float(loss)
            self.progress.best[label] = min(loss, self.progress.best.get(label, float("inf")))
        self.display.event(f"finished {trial.name} eval_loss={'-' if loss is None else f'{loss:.4f}'}")
        return None

    def _note_progress(self, attempt: _Attempt, metrics: list[dict[str, Any]]) -> None:
        """The running trial's FLOPs so far (its latest report), for the live ETA; capped at what the trial
        costs this invocation (a fork reports its trunk's FLOPs too)."""
        flops = [m["flops"] for m in metrics if isinstance(m.get("flops"), (int, float))]
        if flops:
            key = (attempt.trial.trial_id, attempt.attempt)
            self.progress.running_flops[key] = min(float(flops[-1]), self._flops(attempt.trial))

    def _forecast(self, attempt: _Attempt, metrics: dict[str, Any]) -> None:
        """Live forecast of a running trial's final loss (merged into the report it came with, so MLflow
        plots it per step beside the measured loss) and its tripwires: divergence stops the trial at once."""
        key = (attempt.trial.trial_id, attempt.attempt)
        attempt.last_report = metrics
        if key not in self.forecaster.tracks and attempt.tripped is None:
            self.forecaster.start(key, config=attempt.trial.config, n_params=attempt.trial.cost.n_total,
                                  name=attempt.trial.name)
        update = self.forecaster.on_report(key, metrics)
        if update is None:
            return
        self.progress.forecast_wait = self.forecaster.curves_needed
        metrics.update(update.metrics)
        if update.forecast is not None and "eval_loss" in metrics:
            f = update.forecast
            self.progress.forecasts[attempt.trial.name] = (int(metrics["step"]), float(metrics["eval_loss"]),
                                                           f.loss, f.lo, f.hi)
        if update.forecast is not None:
            self.forecasted = True
        trip = update.trip
        if trip is None:
            return
        if attempt.run_id is not None:
            self.writer.set_tags(attempt.run_id, {f"flag.{trip.kind}": f"step {trip.step}: {trip.reason}"[:4000]})
        if trip.stops and attempt.tripped is None and attempt.pruned is None and attempt.ref in self.inflight:
            attempt.tripped = trip
            attempt.trip_report = dict(metrics)
            ray.cancel(attempt.ref, force=True)
        elif not trip.stops:
            self.display.event(f"flagged  {attempt.trial.name}: {trip.kind} at step {trip.step}: {trip.reason}")

    def _early_stop(self) -> None:
        """sweep.early_stop: after a round whose forecasts changed, stop every running trial that cannot change
        its budget's IsoFLOP minimum or bracket (orchestrator/forecast/early_stop.py), the way the search's
        pruning does: cancelled, then recorded by _finish as pruned at its latest report, with the reason."""
        if not (self.config.sweep.early_stop and self.forecasted and self.planned):
            return
        self.forecasted = False
        here = self.todo_ids
        # A budget with a trial done in an earlier invocation is skipped: its measured loss is not known here.
        whole = {t.budget for t in self.planned} - {t.budget for t in self.planned if t.trial_id not in here}
        running = {a.trial.trial_id: a for a in self.inflight.values()}
        points, live = [], {}
        for trial in self.planned:
            if trial.budget is None or trial.budget not in whole:
                continue
            if trial.trial_id in self.finished_loss:
                loss = self.finished_loss[trial.trial_id]
                if loss is not None:  # ended without a loss (pruned, diverged, failed): not in the fit either
                    points.append(Point(name=trial.name, budget=trial.budget, n_params=trial.cost.n_total, loss=loss))
                continue
            attempt, lo, hi = running.get(trial.trial_id), None, None
            if attempt is not None:
                key = (trial.trial_id, attempt.attempt)
                f, track = self.forecaster.latest(key), self.forecaster.tracks.get(key)
                # Only a forecast from at least half the curve counts (an earlier one's interval undercovers
                # on short curves, and a stop it suggests could take a bracketing size: measured in
                # tests/forecast/test_early_stop_live.py); before that the trial counts as a possible minimum.
                if f is not None and track is not None and track.steps and \
                        track.steps[-1] >= EARLY_STOP_FROM * track.n_steps and attempt.last_report is not None:
                    lo, hi, live[trial.name] = f.lo, f.hi, attempt
            points.append(Point(name=trial.name, budget=trial.budget, n_params=trial.cost.n_total, lo=lo, hi=hi))
        for stop in stoppable(points):
            attempt = live.get(stop.name)
            if attempt is None or attempt.pruned is not None or attempt.tripped is not None or \
                    attempt.timed_out is not None or attempt.ref not in self.inflight:
                continue
            attempt.early_stop = stop.reason
            attempt.pruned = attempt.last_report
            ray.cancel(attempt.ref, force=True)

    def _end_tripped(self, attempt: _Attempt) -> None:
        trip, at = attempt.tripped, attempt.trip_report
        result = {"flops": float(at.get("flops", 0.0)), "tokens": at.get("tokens", 0), "steps": trip.step}
        return self._end(attempt, Status.DIVERGED, result=result,
                         reason=f"{trip.reason}; stopped by the driver at step {trip.step}")

    def _forecast_end(self, attempt: _Attempt, status: str) -> None:
        """A finished curve joins the shared fit; an undercooled one is flagged (tag and event)."""
        self.progress.forecasts.pop(attempt.trial.name, None)
        trip = self.forecaster.on_finish((attempt.trial.trial_id, attempt.attempt), finished=status == Status.FINISHED)
        if trip is not None and attempt.run_id is not None:
            self.writer.set_tags(attempt.run_id, {f"flag.{trip.kind}": f"step {trip.step}: {trip.reason}"[:4000]})
            self.display.event(f"flagged  {attempt.trial.name}: {trip.kind}: {trip.reason}")

    def _flops(self, trial: Trial) -> float:
        """The FLOPs running `trial` costs (a fork: only its cooldown; orchestrator/forks.py)."""
        return self.source.flops_of(trial)

    def _record_unrun(self, trial: Trial, status: str, reason: str) -> None:
        """A trial the source settled without running it (a fork whose trunk failed): a run with the reason."""
        attempt = _Attempt(trial, 1)
        self._open_run(attempt, host="-", device=self.device)
        self.progress.running -= 1
        self.writer.close_run(attempt.run_id, status=status, reason=reason[:500])
        self.writer.after_commit(lambda: self._count_unrun(trial, status, reason))

    def _count_unrun(self, trial: Trial, status: str, reason: str) -> None:
        self.source.on_result(trial, Status(status), None)
        self.progress.total += 1
        self.progress.failed += 1
        self.all_results = self.all_results and status in RESULTS
        self.display.event(f"{status:8s} {trial.name}: {reason}")

    def _kill_all(self, reason: str) -> None:
        """Ctrl-C (or the driver stopping): cancel running tasks, mark every open run killed; nothing is left
        RUNNING."""
        for ref in self.inflight:
            ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):  # the queue may already be gone; runs are still closed below
            self._drain()
        for attempt in self.inflight.values():
            if attempt.run_id is not None:
                self.writer.close_run(attempt.run_id, status=Status.KILLED, reason=reason, reports=attempt.reports)
        self.inflight.clear()
        self.writer.commit()  # with what the interrupted round had written: finished trials stay finished

