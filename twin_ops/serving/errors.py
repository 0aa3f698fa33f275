"""Serving raises the request errors of twin_ops.errors (each with its HTTP status); this module
finds them again after they crossed a Ray process boundary."""

from __future__ import annotations

from twin_ops.errors import RequestError


def as_serving_error(exc: BaseException) -> RequestError | None:
    """The RequestError inside an exception that crossed a Ray boundary (RayTaskError.cause).

    Ray's RayTaskError subclasses the cause's class dynamically; only our own classes count.
    """
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, RequestError) and type(exc).__module__ == RequestError.__module__:
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__
        seen += 1
    return None
