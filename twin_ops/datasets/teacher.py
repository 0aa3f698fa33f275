"""An optional teacher model for instruction writing: any OpenAI-compatible chat endpoint.

OpenAI, vLLM, Ollama or the twin's own serving endpoint: TEACHER_BASE_URL and TEACHER_API_KEY come
from the environment, the model and limits from params.yaml (``datasets.teacher``). Transient
failures (connection, timeout, 429, 5xx) are retried with exponential backoff and jitter
(tenacity); requests are spaced to ``requests_per_minute``; the reply must be JSON matching
``SCHEMA``. Every reply is cached on disk by a hash of the request, so a rerun does not pay twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import jsonschema
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from twin_ops.config import TeacherParams
from twin_ops.datasets.instructions import back_translation_messages
from twin_ops.datasets.passages import Passage
from twin_ops.errors import ServiceUnavailable

SCHEMA = {
    "type": "object",
    "properties": {"instruction": {"type": "string", "minLength": 1}},
    "required": ["instruction"],
    "additionalProperties": False,
}
FORMAT_HINT = 'Reply with JSON only: {"instruction": "<the question>"}.'


class TeacherUnavailable(ServiceUnavailable, RuntimeError):
    """The teacher was chosen but cannot be used (no endpoint configured)."""


class RateLimiter:
    """At most ``per_minute`` calls a minute, evenly spaced."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            delay = self.next_at - now
            self.next_at = max(now, self.next_at) + self.interval
        if delay > 0:
            time.sleep(delay)


class Teacher:
    def __init__(
        self,
        params: TeacherParams,
        base_url: str | None,
        api_key: str | None,
        cache_dir: Path,
    ) -> None:
        if not base_url:
            raise TeacherUnavailable("datasets.instruction_source is 'teacher' but TEACHER_BASE_URL is not set")
        import openai

        self.params = params
        # max_retries=0: tenacity owns retries, so there is one retry policy and it is visible here.
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=params.timeout_s, max_retries=0
        )
        self.transient = (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.RateLimitError,
            openai.InternalServerError,
        )
        self.cache_dir = cache_dir
        self.limiter = RateLimiter(params.requests_per_minute)
        self.requests = 0  # paid calls this run (cache hits excluded)
        self.cache_hits = 0

    def _request(self, passage: Passage) -> dict:
        messages = back_translation_messages(passage)
        messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n{FORMAT_HINT}"}
        return {
            "model": self.params.model,
            "messages": messages,
            "temperature": self.params.temperature,
            "max_tokens": self.params.max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "instruction", "schema": SCHEMA, "strict": True},
            },
        }

    def _cached(self, request: dict) -> tuple[Path, str | None]:
        key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        path = self.cache_dir / key[:2] / f"{key}.json"
        return path, (json.loads(path.read_text())["content"] if path.exists() else None)

    def _call(self, request: dict) -> str:
        for attempt in Retrying(
            retry=retry_if_exception_type(self.transient),
            stop=stop_after_attempt(self.params.max_retries + 1),
            wait=wait_exponential_jitter(initial=1, max=30),
            reraise=True,
        ):
            with attempt:
                self.limiter.wait()
                self.requests += 1
                response = self.client.chat.completions.create(**request)
        return response.choices[0].message.content or ""

    def instruction_for(self, passage: Passage) -> str | None:
        """The teacher's instruction, or None when its reply is not valid JSON of the schema."""
        request = self._request(passage)
        path, content = self._cached(request)
        if content is None:
            content = self._call(request)
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps({"content": content}))
            temporary.replace(path)
        else:
            self.cache_hits += 1
        try:
            reply = json.loads(content)
            jsonschema.validate(reply, SCHEMA)
        except (json.JSONDecodeError, jsonschema.ValidationError):
            return None
        return reply["instruction"]
