"""A small HTTP client for the twin API: `twin-ops query` and the post-swap checks use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from twin_ops.errors import ServiceUnavailable, TwinOpsError

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})  # busy or not ready yet: later may succeed


class ApiError(TwinOpsError, RuntimeError):
    """The API answered with an error status; the message is the server's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.retryable = status in RETRYABLE_STATUS


class ApiUnreachable(ServiceUnavailable, ConnectionError):
    """No answer at all from the API (refused, reset, timed out)."""


@dataclass(frozen=True)
class TwinClient:
    url: str
    api_key: str | None = None
    timeout_s: float = 180.0

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _check(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            message = error.get("message") if isinstance(error, dict) else response.text[:500]
            if response.status_code == 503 and isinstance(body, dict) and body.get("reasons"):
                message = "; ".join(body["reasons"])
            raise ApiError(response.status_code, str(message))
        return body

    def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            with httpx.Client(timeout=self.timeout_s) as http:
                return self._check(http.request(method, f"{self.url}{path}", headers=self._headers(), **kwargs))
        except httpx.TransportError as exc:  # refused, reset, timed out: not an answer from the API
            raise ApiUnreachable(
                f"cannot reach the twin API at {self.url}{path}: {type(exc).__name__}: {exc} "
                "(start it with `twin-ops serve`)"
            ) from exc

    def health(self, model: str | None = None) -> dict[str, Any]:
        """The app's health as seen by one twin (``model``; default serving.author's)."""
        return self._send("GET", "/health", params={"model": model} if model else None)

    def rag(self, query: str, author: str | None = None, k: int | None = None, **options: Any) -> dict[str, Any]:
        payload = {"query": query, "author": author, "k": k, **options}
        return self._send("POST", "/rag", json={key: value for key, value in payload.items() if value is not None})
