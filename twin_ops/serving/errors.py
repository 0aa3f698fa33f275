"""Errors with an HTTP status: raised anywhere in serving, turned into an OpenAI-style error body.

They cross Ray process boundaries (pickled inside RayTaskError), so they carry only a message.
"""

from __future__ import annotations


class ServingError(Exception):
    status = 500
    kind = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # pickle by message only: subclasses keep the one-argument constructor
        return (type(self), (self.message,))


class InvalidRequest(ServingError):
    status = 422
    kind = "invalid_request_error"


class RequestTooLarge(ServingError):
    status = 413
    kind = "request_too_large"


class Unauthorized(ServingError):
    status = 401
    kind = "authentication_error"


class NotFound(ServingError):
    status = 404
    kind = "not_found_error"


class Unavailable(ServingError):
    """A dependency (Weaviate, the model, a replica) cannot answer now; retrying later may work."""

    status = 503
    kind = "service_unavailable"


class UpstreamTimeout(ServingError):
    status = 504
    kind = "timeout"


def as_serving_error(exc: BaseException) -> ServingError | None:
    """The ServingError inside an exception that crossed a Ray boundary (RayTaskError.cause)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, ServingError) and type(exc).__module__ == __name__:
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__
        seen += 1
    return None
