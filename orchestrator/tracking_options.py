"""The schema of the tracking/ group: where runs are recorded. The store's own module (tracking.py) imports MLflow,
which the config core must not, so its schema lives beside it here; registered in Hydra's ConfigStore through
orchestrator/config.py."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TrackingConfig:
    """Where runs are recorded (group `tracking/`)."""

    uri: str | None = None
    """MLflow tracking URI; None means sqlite:///<absolute cwd>/mlflow.db. http://host:port for a server."""
    experiment: str | None = None
    """MLflow experiment; None means the sweep name."""
    timeout_s: float = 10.0
    """Fail within this many seconds when the tracking store is unreachable."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"tracking.timeout_s={self.timeout_s} is invalid: it must be a positive number.")
