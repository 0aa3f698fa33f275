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


# --- errors answering one request (RAG, serving) -------------------------------------------------
# They carry their HTTP status and OpenAI error type, so the API turns any of them into the same
# error body wherever it was raised. They cross Ray process boundaries (pickled inside
# RayTaskError), so they carry only a message.


class RequestError(TwinOpsError):
    status = 500
    kind = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # pickle by message only: subclasses keep the one-argument constructor
        return (type(self), (self.message,))


class MalformedRequest(RequestError):
    """The body is not JSON at all."""

    status = 400
    kind = "invalid_request_error"
    exit_code = 2


class InvalidRequest(RequestError):
    status = 422
    kind = "invalid_request_error"
    exit_code = 2


class RequestTooLarge(RequestError):
    status = 413
    kind = "request_too_large"
    exit_code = 2


class Unauthorized(RequestError):
    status = 401
    kind = "authentication_error"
    exit_code = 2


class NotFound(RequestError):
    status = 404
    kind = "not_found_error"
    exit_code = 2


class TooManyRequests(RequestError):
    """Refused at admission: the model could not answer before the request's deadline, or its queue
    is full. ``retry_after`` (seconds) goes into the Retry-After header."""

    status = 429
    kind = "rate_limit_exceeded"
    retryable = True

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):
        return (type(self), (self.message, self.retry_after))


class Unavailable(RequestError):
    """A dependency (Weaviate, the model, a replica) cannot answer now; retrying later may work."""

    status = 503
    kind = "service_unavailable"
    retryable = True


class UpstreamTimeout(RequestError):
    status = 504
    kind = "timeout"
    retryable = True
