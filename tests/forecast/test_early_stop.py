"""The early-stop rule: a running trial is stopped only when it cannot be its budget's minimum nor bracket one."""

from orchestrator.forecast.early_stop import Point, stoppable


def profile(budget, losses, running=()):
    """Sizes 1e6 x 2^i; `running` maps an index to its forecast interval (lo, hi)."""
    running = dict(running)
    return [Point(name=f"c{budget:g}n{i}", budget=budget, n_params=1e6 * 2 ** i,
                  loss=None if i in running else loss, lo=running.get(i, (None, None))[0],
                  hi=running.get(i, (None, None))[1]) for i, loss in enumerate(losses)]


def test_a_far_size_whose_interval_is_above_the_best_is_stopped_with_its_reason():
    # 7 sizes, the minimum at index 2 (finished, 3.00); index 6 is running and forecast 3.40..3.50.
    points = profile(1e18, [3.2, 3.05, 3.00, 3.04, 3.10, 3.20, None], running={6: (3.40, 3.50)})
    stops = stoppable(points)
    assert [s.name for s in stops] == ["c1e+18n6"]
    assert "at least 3.4000" in stops[0].reason and "c1e+18n2's measured 3.0000" in stops[0].reason


def test_a_size_that_brackets_the_minimum_is_never_stopped():
    # The same running interval, but at index 4: two sizes from the minimum, so it brackets it.
    points = profile(1e18, [3.2, 3.05, 3.00, 3.04, None, 3.20, 3.30], running={4: (3.40, 3.50)})
    assert stoppable(points) == []


def test_a_size_that_may_still_be_the_minimum_is_not_stopped():
    points = profile(1e18, [3.2, 3.05, 3.00, 3.04, 3.10, 3.20, None], running={6: (2.95, 3.50)})
    assert stoppable(points) == []


def test_a_running_candidate_widens_what_is_kept():
    # Index 5 is running and may beat the finished best: sizes within 2 of it (3..6) are kept too.
    points = profile(1e18, [3.2, 3.05, 3.00, 3.04, 3.10, None, None], running={5: (2.90, 3.10), 6: (3.40, 3.50)})
    assert stoppable(points) == []


def test_no_forecast_yet_and_short_profiles_are_never_stopped():
    points = profile(1e18, [3.2, 3.05, 3.00, 3.04, 3.10, 3.20, None], running={6: (None, None)})
    assert stoppable(points) == []
    short = profile(1e19, [3.0, 2.9, None, 3.5], running={3: (3.40, 3.50)})
    assert stoppable(short) == []  # 4 sizes: fewer than 2 x 2 + 1, the fit needs all of them


def test_budgets_are_judged_apart():
    points = profile(1e18, [3.2, 3.05, 3.00, 3.04, 3.10, 3.20, None], running={6: (3.40, 3.50)})
    points += profile(1e19, [2.9, 2.8, 2.75, 2.78, 2.85, 2.95, None], running={6: (2.70, 2.80)})
    assert [s.budget for s in stoppable(points)] == [1e18]
