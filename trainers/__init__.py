"""Trainers: what a sweep's trial runs. Each trainer is a function with the contract of `api.py`.

    api.py         the contract: config in, report callback, TrialResult out; load_trainer
    config.py      ModelConfig, DataConfig, TrainerConfig: the Hydra group schemas
    gpt.py         the built-in GPT trainer (`trainers.gpt:train`)
    model.py       the GPT module (pre-norm decoder, SDPA attention, learned or rotary positions)
    schedule.py    warmup + cosine / WSD learning rate whose length is the trial's D
    data.py        token sources: synthetic language, byte text, token memmaps; bad-input errors
    synthetic.py   the synthetic HMM language and its exact loss floor (forward algorithm)
    checkpoint.py  atomic per-trial checkpoints for resume
    device.py      device, precision, peak FLOP/s for MFU, OOM detection
    surrogate.py   a trainer that returns a known scaling law's losses, for testing at scale
    examples/      plug-in examples: mlp.py (a user's own trainer), synthetic_sweep.py (a 3x3 demo)
"""
