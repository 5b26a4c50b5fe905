"""The Ray shells of the run stage besides the trial loop (orchestrator/runner.py): attaching to a cluster as
Ray's own CLI sets it up (attach.py) and running a trial that spans several workers on Ray Train (train.py)."""
