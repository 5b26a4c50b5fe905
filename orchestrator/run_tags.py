"""The vocabularies of the tags a run carries in the tracking store: its kind, the stage that fed it, its role.

StrEnums, as `trainers.api.Status` is: a member equals its string (`RunKind.TRIAL == "trial"`), so MLflow
filters (`tags.kind = 'trial'`), pandas columns and JSON read the same value the code names.
"""

from __future__ import annotations

from enum import StrEnum


class RunKind(StrEnum):
    """What a run in a sweep's experiment is (its `kind` tag; tracking.py writes and searches by it)."""

    SWEEP = "sweep"
    """One invocation's parent run: the sweep's config, fit.json and the report as artifacts."""
    TRIAL = "trial"
    """One attempt of a planned trial: a point the fit may use."""
    TRUNK = "trunk"
    """A WSD trunk that forks cooldowns (orchestrator/forks.py): trained, never fitted."""
    LEASE = "lease"
    """The sweep's lease: one driver at a time (orchestrator/lease.py)."""
    COMPARE = "compare"
    """A comparison of sweeps, in its own experiment (orchestrator/compare/track.py)."""


class Stage(StrEnum):
    """Which source fed a trial run (its `stage` tag; orchestrator/trial_source.py)."""

    LR_SEARCH = "lr_search"
    """A learning-rate search's trial (search/lr_search.py)."""
    ADAPTIVE = "adaptive_isoflop"
    """A size placed by adaptive IsoFLOP placement (search/adaptive.py)."""
    PILOT = "pilot"
    """A pilot's search trial (pilot/run.py)."""


class Role(StrEnum):
    """A run's place in a forked sweep (its `role` tag; orchestrator/forks.py)."""

    TRUNK = "trunk"
    """The constant-rate run that writes the fork points."""
    FORK = "fork"
    """A cooldown resumed from a trunk's fork point: the independent WSD run of its D."""
