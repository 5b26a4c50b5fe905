"""A trainer whose optional validate hook has a bug (a TypeError, not the contract's ValueError): the CLI
must report it as an internal failure (exit 1, traceback), not as bad input (exit 2)."""


def validate(config):
    return config["trainer"]["lr"] + "x"  # TypeError: float + str


def train(config, report, **kwargs):
    return {"status": "finished"}
