"""`python -m orchestrator` and the `orchestrator` console script: one entry, the same behaviour."""

import os
import sys

# Multi-threaded OpenBLAS makes the fitting stage's small matrix products ~20x slower on small CPUs;
# torch keeps its own thread settings.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> int:
    """Run the CLI. The folder it runs in is importable, as `python -m` makes it, so that a console-script
    user's `trainer.target=my_pkg.train:train` resolves from their own folder too."""
    if not {"", os.getcwd()} & set(sys.path):
        sys.path.insert(0, os.getcwd())
    from orchestrator.cli import main as cli_main  # noqa: PLC0415  (after the environment is set)

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
