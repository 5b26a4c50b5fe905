"""The plan stage: a validated config (and its composed datasets) -> the sweep's trials.

Shared by the run and plan actions and by adaptive placement, which plans one more size at a time with the
same datasets the first wave was planned with (composed once by the CLI, with the user's `data.*` overrides).
"""

from __future__ import annotations

from dataclasses import replace

from orchestrator.config import Config
from orchestrator.errors import UsageError
from orchestrator.planner import Trial, plan
from trainers.config import DataConfig


def plan_trials(config: Config, *, datasets: dict[str, DataConfig]) -> list[Trial]:
    """The sweep's trials; with sweep.lr_from, each at the rate the named search's power law gives."""
    lr_law = None
    if config.sweep.lr_from:
        from orchestrator.search.lr_search import tuned_lr_law  # noqa: PLC0415  (Optuna only when asked for)

        try:
            lr_law = tuned_lr_law(config)
        except ValueError as err:  # the named search has no results yet: the user's sweep.lr_from
            raise UsageError(str(err)) from None
    sweep = config.sweep
    if config.hparams.centre_tokens_per_param and sweep.kind == "isoflop":  # a pilot's measured centre
        sweep = replace(sweep, centre_tokens_per_param=config.hparams.centre_tokens_per_param)
    return plan(sweep, model=config.model, trainer=config.trainer, datasets=datasets, lr_law=lr_law,
                hparams=config.hparams)
