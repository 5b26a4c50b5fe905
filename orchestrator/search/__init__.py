"""Optuna where grids are wasteful: per-size learning-rate search with pruning (`lr_search`), the
tuned-rate handoff (`tuned`), adaptive IsoFLOP placement (`adaptive`), and where studies live (`storage`)."""
