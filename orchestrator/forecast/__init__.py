"""Forecasts of a run's final loss from its partial curve, under the learning-rate schedule it actually uses.

- `law.py`: the scaling law with learning-rate annealing (Tissue et al. 2024) and its joint fit (pure maths).
- `table.py`: curves from a CSV of intermediate checkpoints, and their forecasts.
- `live.py`: the driver's per-trial forecaster and tripwires (divergence, spikes, plateaus, undercooling).
"""
