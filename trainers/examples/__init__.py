"""Example plug-in trainers: each is a `train` function with the contract of `trainers/api.py`."""
