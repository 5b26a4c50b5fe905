"""The two kinds of error the CLI reports as one sentence, and what each exit code means.

    0  success: the action did what it was asked (a sweep whose trials all reached a result, a fit or
       report that was written, even when a method was skipped with its reason)
    1  failure: the input was fine but the work did not succeed (trials crashed, the sweep is being run by
       another driver, a fit failed); an internal bug is also 1, printed with its traceback
    2  bad input: the command line, the config, the data or the tracking store cannot be used as given;
       one sentence names the key, what was wrong and what is allowed, and nothing was written

Everything else that escapes an action is a bug: the CLI prints its traceback and exits 1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad input (exit 2): one sentence naming the key, what was wrong and what is allowed.

    A ValueError, so the config schemas' `__post_init__` checks (torchtitan's convention) read the same.
    """


class RunFailure(RuntimeError):
    """Valid input, but the work cannot be done now (exit 1), e.g. another driver holds the sweep."""
