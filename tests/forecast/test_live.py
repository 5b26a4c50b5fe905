"""The driver's forecaster on real trial configs: forecasts per evaluation, and its tripwires."""

import math

import numpy as np

from orchestrator.forecast import law
from orchestrator.forecast.live import LiveForecaster, trial_schedule

CONFIG = {"model": {"seq_len": 64}, "tokens": 64 * 8 * 100,
          "trainer": {"lr": 1e-3, "batch_tokens": 512, "warmup_tokens": 0, "schedule": "wsd", "min_lr_ratio": 0.1,
                      "decay_fraction": 0.2, "cooldown_shape": "linear"}}


def test_trial_schedule_is_the_trainers_rate_at_each_step():
    lr, per_step = trial_schedule(CONFIG)
    assert per_step == 512 and len(lr) == 100
    assert lr[50] == 1e-3 and lr[-1] == 1e-4


def _loss(lr):
    s1, s2 = law.areas(lr)
    return 3.0 + 1.0 * s1 ** -0.5 - 0.3 * s2


def test_each_evaluation_gets_a_forecast_with_an_interval_around_the_truth():
    clock = iter(range(0, 10_000, 10))
    live = LiveForecaster(clock=lambda: next(clock))
    lr, _ = trial_schedule(CONFIG)
    truth = _loss(lr)
    # finished curves of the sweep: the same law at other rates
    for peak in (5e-4, 2e-3, 1.5e-3):
        config = {**CONFIG, "trainer": {**CONFIG["trainer"], "lr": peak}}
        assert live.start(peak, config=config, n_params=1e5, name=f"p{peak}")
        curve = _loss(trial_schedule(config)[0])
        for step in range(10, 101, 10):
            live.on_report(peak, {"step": step, "eval_loss": float(curve[step - 1])})
        assert live.on_finish(peak, finished=True) is None
    assert live.start("t", config=CONFIG, n_params=1e5, name="t")
    update = None
    for step in range(10, 51, 10):
        update = live.on_report("t", {"step": step, "eval_loss": float(truth[step - 1])})
    assert set(update.metrics) == {"forecast_final_loss", "forecast_final_loss_lo", "forecast_final_loss_hi"}
    assert update.metrics["forecast_final_loss_lo"] <= truth[-1] <= update.metrics["forecast_final_loss_hi"]
    assert abs(update.metrics["forecast_final_loss"] - truth[-1]) / truth[-1] < 0.005


def test_a_nan_or_a_blown_up_eval_loss_trips_divergence_with_its_step():
    live = LiveForecaster()
    live.start("t", config=CONFIG, n_params=1e5, name="t")
    live.on_report("t", {"step": 10, "eval_loss": 4.0})
    trip = live.on_report("t", {"step": 20, "eval_loss": 9.0}).trip
    assert trip.kind == "diverged" and trip.step == 20 and trip.stops
    live.start("u", config=CONFIG, n_params=1e5, name="u")
    trip = live.on_report("u", {"step": 3, "train_loss": math.nan}).trip
    assert trip.kind == "diverged" and trip.step == 3


def test_a_spike_far_above_the_forecast_is_flagged_not_stopped():
    live = LiveForecaster(min_interval_s=0.0)
    lr, _ = trial_schedule(CONFIG)
    truth = _loss(lr)
    live.start("t", config=CONFIG, n_params=1e5, name="t")
    for step in range(10, 61, 10):
        live.on_report("t", {"step": step, "eval_loss": float(truth[step - 1] + 1e-4 * np.sin(step))})
    trip = live.on_report("t", {"step": 70, "eval_loss": float(truth[69] * 1.5)}).trip
    assert trip is not None and trip.kind == "spike" and not trip.stops and trip.step == 70


def test_a_user_trainer_without_our_keys_gets_no_forecast():
    live = LiveForecaster()
    assert not live.start("x", config={"trainer": {}, "model": {}, "tokens": 10}, n_params=1.0, name="x")
    assert live.on_report("x", {"step": 1, "eval_loss": 3.0}) is None


def test_a_young_curve_gets_no_forecast_until_the_law_can_speak_and_never_an_absurd_one():
    # Warmup of 10 steps, evaluations every 4: the points before law.fit_start (2x warmup's end) fall faster than
    # the law allows; a forecast from them extrapolated the panel's "final -25.7 [-4213, 4162]" on a GPT sweep.
    config = {**CONFIG, "trainer": {**CONFIG["trainer"], "warmup_tokens": 64 * 8 * 10, "schedule": "cosine"}}
    lr, _ = trial_schedule(config)
    start = law.fit_start(law.Curve(steps=np.array([1]), loss=np.array([1.0]), lr=lr, n_params=1e5, tokens=1e5))
    rng = np.random.default_rng(0)
    truth = _loss(lr)
    live = LiveForecaster(min_interval_s=0.0)
    for peak in (5e-4, 2e-3, 1.5e-3):  # the sweep's finished curves (before 3, no forecast is made at all)
        other = {**config, "trainer": {**config["trainer"], "lr": peak}}
        live.start(peak, config=other, n_params=1e5, name=f"p{peak}")
        curve = _loss(trial_schedule(other)[0])
        for step in range(10, 101, 10):
            live.on_report(peak, {"step": step, "eval_loss": float(curve[step - 1] * (1 + 0.01 * rng.standard_normal()))})
        live.on_finish(peak, finished=True)
        if len(live.finished) == 2:  # two finished curves: still no forecast
            live.start("u", config=config, n_params=1e5, name="u")
            assert not any(live.on_report("u", {"step": step, "eval_loss": float(truth[step - 1])}).metrics
                           for step in range(4, 101, 4))
    live.start("t", config=config, n_params=1e5, name="t")
    logged = {}
    for step in range(4, 101, 4):
        noisy = float(truth[step - 1] * (1 + 0.01 * rng.standard_normal()) + (2.0 if step < 10 else 0.0))
        update = live.on_report("t", {"step": step, "eval_loss": noisy})
        if update.metrics:
            logged[step] = update.metrics
    assert logged and min(logged) >= start + 4  # two evaluations at or past the law's start
    for metrics in logged.values():
        lo, value, hi = (metrics[f"forecast_final_loss{k}"] for k in ("_lo", "", "_hi"))
        assert 0 < lo < value < hi and (hi - lo) / value <= 2 * law.Z90 * 0.1


def test_the_panel_says_how_many_finished_trials_forecasts_wait_for_then_shows_them():
    from orchestrator.progress import SweepProgress, forecast_rows

    live = LiveForecaster(min_interval_s=0.0)
    progress = SweepProgress(sweep="s", total=5, planned_flops=1.0, running=1)
    lr, _ = trial_schedule(CONFIG)
    truth = _loss(lr)
    for n, peak in enumerate((5e-4, 2e-3, 1.5e-3)):
        progress.forecast_wait = live.curves_needed
        (row,) = forecast_rows(progress)
        assert row[0] == "forecasts" and row[1].startswith(f"once {3 - n} more trial(s) finish")
        config = {**CONFIG, "trainer": {**CONFIG["trainer"], "lr": peak}}
        live.start(peak, config=config, n_params=1e5, name=f"p{peak}")
        for step in range(10, 101, 10):
            live.on_report(peak, {"step": step, "eval_loss": float(_loss(trial_schedule(config)[0])[step - 1])})
        live.on_finish(peak, finished=True)
    live.start("t", config=CONFIG, n_params=1e5, name="t")
    for step in range(10, 51, 10):
        update = live.on_report("t", {"step": step, "eval_loss": float(truth[step - 1])})
    assert live.curves_needed == 0 and update.forecast is not None
    f = update.forecast
    progress.forecast_wait, progress.forecasts["t"] = live.curves_needed, (50, float(truth[49]), f.loss, f.lo, f.hi)
    (row,) = forecast_rows(progress)
    assert row[0] == "forecast t" and f"final {f.loss:.4f}" in row[1]
