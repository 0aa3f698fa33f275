"""The one error base of twin-ops.

Every error the project raises on purpose derives from :class:`TwinOpsError`. It carries the two
facts the edges need, so that each edge maps errors in one place:

* ``retryable`` — True when trying the same thing again later may succeed (a service not up yet, a
  lock held, a network blip). Airflow retries these; everything else fails the task at once.
* ``exit_code`` — what the CLI exits with (1 for a failed stage, 2 for bad input or config).

Subclasses keep a builtin base where callers already catch one (``FileNotFoundError``,
``ValueError``, ...), so ``class NoTrainedModel(TwinOpsError, FileNotFoundError)`` still reads as
"a file is missing" to code that does not know twin-ops.
"""

from __future__ import annotations


class TwinOpsError(Exception):
    """A failure twin-ops expected and can explain in one line (the message)."""

    retryable: bool = False
    exit_code: int = 1


class InputError(TwinOpsError):
    """Bad input from the user: a config, an override, a request. Retrying cannot help."""

    exit_code = 2


class ServiceUnavailable(TwinOpsError):
    """A service the stage needs (Weaviate, Docker, Ray, a model server) is not answering (yet)."""

    retryable = True
