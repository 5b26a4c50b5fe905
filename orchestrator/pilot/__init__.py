"""action=pilot: short runs at the smallest scales measure a sweep's rules before its IsoFLOP design is laid.

options.py (PilotConfig, the pilot: node), design.py (the pure part: cells, batch choices, the centre from a
profile, the vocabulary check, the hparams YAML), run.py (the stage: Optuna search on the Ray runner, the
profile, the files).
"""
