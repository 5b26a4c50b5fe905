"""The two ways a fit can fail: the user's input (one sentence, exit 2) or the maths (a hard failure)."""

from __future__ import annotations

from orchestrator.errors import UsageError


class FitInputError(UsageError):  # a ValueError: the CLI's exit-2 kind (orchestrator/errors.py)
    """Bad input to the fitting stage: names the key or column, what was wrong and what is allowed."""


class FitError(RuntimeError):
    """A method could not produce a fit from valid input (e.g. every optimiser start ended non-finite)."""
