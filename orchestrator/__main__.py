import os
import sys

# Multi-threaded OpenBLAS makes the fitting stage's small matrix products ~20x slower on small CPUs;
# torch keeps its own thread settings.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from orchestrator.cli import main  # noqa: E402

sys.exit(main())
