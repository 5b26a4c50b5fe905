"""Every TrialSource driven in-process, without Ray or a store, as Optuna tests its pruners: real planned trials
in, fake results fed back the way the trial loop (orchestrator/runner/__init__.py) would, and what the source
yields next, settles and calls done is asserted. The same sources on real Ray: tests/test_runner.py,
tests/test_forks.py, tests/search/."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator.cli import compose_config, data_axis, to_typed
from orchestrator.forks import ForkSource, plan_forks
from orchestrator.planner import Trial
from orchestrator.search.adaptive import AdaptiveIsoFLOP, point_planner
from orchestrator.search.lr_search import LRSearch
from orchestrator.sweep_plan import plan_trials
from orchestrator.trial_source import FixedList, Settled, TrialSource
from trainers.api import Status
from trainers.checkpoint import FILENAME


def planned(*args: str):
    config = to_typed(compose_config(list(args)))
    datasets = data_axis(config, list(args))
    return config, plan_trials(config, datasets=datasets), datasets


def finished(trial: Trial, loss: float) -> dict:
    """A trainer's result as the loop passes it to on_result."""
    return {"status": Status.FINISHED, "final_eval_loss": loss, "flops": trial.cost.c_exact, "tokens": trial.tokens}


# -- the base class ------------------------------------------------------------------------------------------

def test_every_hook_the_loop_calls_is_declared_on_the_base_class():
    # The contract is the base class: a hook the loop called only on some sources (probed with getattr or
    # hasattr) would be hidden from a new source's author.
    loop = Path(__file__).resolve().parents[1] / "orchestrator" / "runner" / "__init__.py"
    called, probed = set(), []
    for node in ast.walk(ast.parse(loop.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "source" or isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "source":
            called.add(node.attr)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr") and \
                "source" in ast.unparse(node.args[0]):
            probed.append(ast.unparse(node))
    assert probed == []
    assert {"next_trials", "done", "on_report", "on_result", "take_settled", "run_dir", "flops_of"} <= called
    assert sorted(h for h in called if not callable(getattr(TrialSource, h, None))) == []


def test_a_source_must_write_next_trials_and_done():
    class Incomplete(TrialSource):
        def next_trials(self, free_slots):
            return []

    with pytest.raises(TypeError, match="done"):
        Incomplete()


def test_the_optional_hooks_default_to_what_a_plain_list_needs():
    _, trials, _ = planned("sweep=tiny", "trainer=surrogate")
    source = FixedList(trials)
    trial = trials[0]
    assert source.on_report(trial, {"step": 1, "eval_loss": 3.0}) is False  # never pruned
    assert source.tags(trial) == {}
    assert source.run_dir(trial) is None  # the runner's own checkpoints/<sweep>/<trial id>
    assert source.flops_of(trial) == trial.cost.c_exact
    assert source.take_settled() == []
    assert source.outlook() is None  # the loop prints its plain count
    source.on_start(trial, "run-id")
    source.on_result(trial, Status.FINISHED, finished(trial, 3.0))


def test_a_fixed_list_feeds_its_trials_in_order_into_the_free_slots():
    _, trials, _ = planned("sweep=tiny", "trainer=surrogate")
    source = FixedList(trials)
    assert [t.trial_id for t in source.next_trials(4)] == [t.trial_id for t in trials[:4]]
    assert not source.done()
    assert [t.trial_id for t in source.next_trials(4)] == [t.trial_id for t in trials[4:]]
    assert source.done()
    assert source.next_trials(4) == []


# -- WSD trunks and forks (orchestrator/forks.py) ------------------------------------------------------------

@pytest.fixture
def forked(tmp_path):
    _, trials, _ = planned("sweep=forks_tiny")
    return plan_forks(trials, root=tmp_path)


def leave_checkpoint(plan, trunk, fork) -> None:
    """What a trunk writes at a fork point (trainers/gpt.py): the fork's starting checkpoint."""
    folder = plan.fork_dir(trunk.trunk_id, fork.trial.trial_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILENAME).write_bytes(b"checkpoint")


def test_trunks_come_first_and_a_fork_follows_its_checkpoint(forked):
    source = ForkSource(forked, done_ids=set())
    trunks = source.next_trials(8)
    assert {t.trial_id for t in trunks} == {t.trunk_id for t in forked.trunks}  # no fork has a checkpoint yet
    assert source.done() and source.next_trials(8) == []  # nothing more until a trunk reaches a fork point
    trunk = forked.trunks[0]
    first = trunk.forks[0]
    assert source.on_report(trunk.trial, {"step": 3, "fork_ready": first.at}) is False  # no checkpoint: nothing
    assert source.next_trials(8) == []
    leave_checkpoint(forked, trunk, first)
    source.on_report(trunk.trial, {"step": 4, "fork_ready": first.at})
    assert not source.done()
    assert [t.trial_id for t in source.next_trials(8)] == [first.trial.trial_id]
    assert source.run_dir(first.trial) == str(forked.fork_dir(trunk.trunk_id, first.trial.trial_id))
    assert source.run_dir(trunk.trial) is None
    assert source.flops_of(first.trial) == pytest.approx(first.cooldown_flops)  # the trunk paid for the rest
    assert source.flops_of(first.trial) < first.trial.cost.c_exact
    source.on_start(trunk.trial, "trunk-run")
    assert source.tags(first.trial) == {"role": "fork", "trunk_id": trunk.trunk_id, "fork_point": str(first.at),
                                        "trunk_run_id": "trunk-run"}
    assert source.tags(trunk.trial)["kind"] == "trunk"


def test_a_trunk_that_diverges_settles_the_forks_it_did_not_reach(forked):
    source = ForkSource(forked, done_ids=set())
    source.next_trials(8)
    trunk = forked.trunks[0]
    first, *rest = trunk.forks
    leave_checkpoint(forked, trunk, first)
    source.on_report(trunk.trial, {"step": 4, "fork_ready": first.at})
    source.on_result(trunk.trial, Status.DIVERGED, {"status": Status.DIVERGED, "reason": "loss spike at step 9"})
    settled = source.take_settled()
    assert [s.trial.trial_id for s in settled] == [f.trial.trial_id for f in rest]
    assert all(isinstance(s, Settled) and s.status == Status.DIVERGED for s in settled)
    assert all("did not reach the fork point: loss spike at step 9" in s.reason for s in settled)
    assert source.take_settled() == []  # each is recorded once
    assert [t.trial_id for t in source.next_trials(8)] == [first.trial.trial_id]  # its checkpoint exists: it runs


def test_a_trunk_that_finishes_short_of_its_forks_settles_them_as_crashed(forked):
    source = ForkSource(forked, done_ids=set())
    source.next_trials(8)
    trunk = forked.trunks[0]
    source.on_result(trunk.trial, Status.FINISHED, {"status": Status.FINISHED, "tokens": 0})
    assert {s.status for s in source.take_settled()} == {Status.CRASHED}  # finished, yet no checkpoint left


def test_fork_checkpoints_go_once_every_fork_has_a_result(forked):
    source = ForkSource(forked, done_ids=set())
    source.next_trials(8)
    trunk = forked.trunks[0]
    for fork in trunk.forks:
        leave_checkpoint(forked, trunk, fork)
        source.on_report(trunk.trial, {"fork_ready": fork.at})
    source.on_result(trunk.trial, Status.FINISHED, {"status": Status.FINISHED, "tokens": trunk.stop_at})
    forks = [t for t in source.next_trials(8) if t.trial_id in {f.trial.trial_id for f in trunk.forks}]
    assert len(forks) == len(trunk.forks)
    folder = forked.root / "trunks" / trunk.trunk_id
    for trial in forks[:-1]:
        source.on_result(trial, Status.FINISHED, finished(trial, 3.0))
        assert not (folder / trial.trial_id).exists()
    assert folder.exists()  # one fork still needs the trunk's folder
    source.on_result(forks[-1], Status.FINISHED, finished(forks[-1], 3.0))
    assert not folder.exists()


def test_forks_already_done_are_skipped_and_their_trunk_not_rerun(forked):
    trunk = forked.trunks[0]
    source = ForkSource(forked, done_ids={f.trial.trial_id for f in trunk.forks})
    assert trunk.trunk_id not in {t.trial_id for t in source.next_trials(8)}


# -- adaptive IsoFLOP placement (orchestrator/search/adaptive.py) --------------------------------------------

TRUE_N_OPT = {1e12: 3.0e4, 4e12: 1.5e5}
"""Each budget's minimum: the first budget's lies below its first wave (47k..169k), the second's inside it."""


def parabola_loss(trial: Trial) -> float:
    """L = 3 + 0.3 (ln N - ln N_opt)^2: an exact IsoFLOP parabola (Hoffmann et al. 2022, approach 2)."""
    return 3.0 + 0.3 * math.log(trial.cost.n_total / TRUE_N_OPT[trial.budget]) ** 2


def test_adaptive_placement_extends_past_an_edge_and_stops_at_the_minimum():
    config, first_wave, datasets = planned("sweep=isoflop_adaptive_tiny")
    source = AdaptiveIsoFLOP(config, first_wave=first_wave, plan_point=point_planner(config, datasets=datasets),
                             previous={})
    assert "6 trials planned now" in source.outlook()
    fed = source.next_trials(100)
    assert {t.trial_id for t in fed} == {t.trial_id for t in first_wave}
    assert source.next_trials(100) == []  # no decision before the first wave's results
    smallest = min(t.cost.n_total for t in first_wave if t.budget == 1e12)
    rounds, added = 0, []
    while not source.done():
        for trial in fed:
            source.on_result(trial, Status.FINISHED, finished(trial, parabola_loss(trial)))
        fed = source.next_trials(100)
        added += fed
        rounds += 1
        assert rounds < 20, "the policy never stopped"
    assert fed == []
    below = [t for t in added if t.budget == 1e12 and t.cost.n_total < smallest]
    assert below, "the unbracketed minimum was not extended past the smallest size"
    assert source.decisions[len(TRUE_N_OPT)]["decision"] == "extend"  # the first decision after each first wave
    for (budget, _, _), n_opt in source.estimates().items():
        assert n_opt == pytest.approx(TRUE_N_OPT[budget], rel=config.adaptive.tolerance)
    assert all(len(p.tried) <= config.adaptive.max_sizes for p in source.profiles.values())


def test_adaptive_placement_resumes_from_results_an_earlier_driver_recorded():
    config, first_wave, datasets = planned("sweep=isoflop_adaptive_tiny")
    previous = {t.trial_id: (Status.FINISHED, parabola_loss(t)) for t in first_wave}
    source = AdaptiveIsoFLOP(config, first_wave=first_wave, plan_point=point_planner(config, datasets=datasets),
                             previous=previous)
    fed = source.next_trials(100)
    assert fed and not {t.trial_id for t in fed} & set(previous)  # straight to the added sizes
    assert source.spent == pytest.approx(sum(t.cost.c_exact for t in first_wave))


# -- the learning-rate search (orchestrator/search/lr_search.py) ---------------------------------------------

def lr_search(*overrides: str, storage=None, previous=None):
    config, points, _ = planned("sweep=lr_search_tiny", "search=lr", "search.pruner=median", *overrides)
    storage = storage or optuna.storages.InMemoryStorage()
    return LRSearch(config, points=points, storage=storage, previous=previous or {}), config, storage


def lr_loss(trial: Trial) -> float:
    """A loss valley in ln lr around 3e-3."""
    return 3.0 + 0.1 * math.log(trial.config["trainer"]["lr"] / 3e-3) ** 2


def test_the_search_asks_one_rate_per_size_at_a_time_and_tags_its_runs():
    source, config, _ = lr_search()
    fed = source.next_trials(10)
    assert len(fed) == 3  # search.parallel_per_size=1, 3 sizes
    assert source.next_trials(10) == []
    for trial in fed:
        assert config.search.lr_min <= trial.config["trainer"]["lr"] <= config.search.lr_max
        tags = source.tags(trial)
        assert tags["stage"] == "lr_search" and tags["optuna_trial"] == "0"
        assert tags["optuna_study"].startswith("lr_search_tiny/")


def test_the_search_is_done_after_trials_per_size_results_and_crashes_do_not_count():
    source, config, _ = lr_search()
    told = 0
    crashed = False
    while not source.done():
        fed = source.next_trials(10)
        assert fed, "the search stalled"
        for trial in fed:
            if not crashed:  # one crash: not a loss the sampler models, asked again
                source.on_result(trial, Status.CRASHED, None)
                crashed = True
                continue
            source.on_result(trial, Status.FINISHED, finished(trial, lr_loss(trial)))
            told += 1
    rows, pruned = source.finished_runs()
    assert told == len(rows) == 3 * config.search.trials_per_size and pruned == 0
    states = [t.state for s in source.studies for t in s.get_trials(deepcopy=False)]
    assert states.count(TrialState.FAIL) == 1


def test_the_median_pruner_stops_a_rate_worse_than_the_earlier_ones_at_the_same_step():
    source, config, _ = lr_search("search.trials_per_size=4", "search.startup_trials=2")
    point = 0
    for _ in range(config.search.startup_trials):
        trial = next(t for t in source.next_trials(10) if source.running[t.trial_id][0] == point)
        for step in (10, 20):
            assert source.on_report(trial, {"step": step, "eval_loss": 3.0}) is False
        source.on_result(trial, Status.FINISHED, finished(trial, 3.0))
    trial = next(t for t in source.next_trials(10) if source.running[t.trial_id][0] == point)
    assert source.on_report(trial, {"step": 10, "eval_loss": float("nan")}) is False  # not a loss: ignored
    assert source.on_report(trial, {"step": 10, "eval_loss": 5.0}) is True
    source.on_result(trial, Status.PRUNED, {"flops": 1.0, "pruned_eval_loss": 5.0})
    assert source.finished_runs()[1] == 1
    assert source.studies[point].get_trials(deepcopy=False)[-1].state == TrialState.PRUNED


def test_a_resumed_search_counts_earlier_results_and_reasks_what_a_dead_driver_left_running():
    first, _, storage = lr_search()
    fed = first.next_trials(10)
    done, left = fed[0], fed[1]
    first.on_result(done, Status.FINISHED, finished(done, lr_loss(done)))  # `left` stays RUNNING: the driver died
    second, _, _ = lr_search(storage=storage)
    assert second.resumed == 1
    study = second.studies[first.running[left.trial_id][0]]
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.FAIL]
    assert len(second.next_trials(10)) == 3  # every size asks again


def test_a_rate_finished_before_is_told_from_the_store_not_rerun():
    probe, _, _ = lr_search("search.seed=7")
    trial = probe.next_trials(10)[0]  # the rate study 0 asks first with this seed
    source, _, _ = lr_search("search.seed=7", previous={trial.trial_id: (Status.FINISHED, 3.25)})
    fed = source.next_trials(10)
    assert trial.trial_id not in {t.trial_id for t in fed}
    assert source.studies[0].get_trials(deepcopy=False)[0].value == 3.25
