"""The app's Prometheus metrics, through ``ray.serve.metrics`` (Ray exports them, with its own
``ray_serve_*`` metrics, on each node's metrics export port: ``ray start --metrics-export-port``;
``twin-ops serve`` sets ``serving.ray.metrics_export_port``). Every name below gets Ray's ``ray_``
prefix when exported, e.g. ``ray_twin_requests_total``.

Created inside the replica (a metric object belongs to the process that reports it).
"""

from __future__ import annotations

from twin_ops.llm.model import DecodeTiming
from twin_ops.serving.scheduler import Observer

SECONDS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
ROWS = [1, 2, 4, 8, 16, 32, 64]


class RequestMetrics:
    """The Ingress's: every HTTP answer by route, status and model."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self.requests = metrics.Counter(
            "twin_requests", description="HTTP requests answered.", tag_keys=("route", "status", "model")
        )
        self.latency = metrics.Histogram(
            "twin_request_seconds",
            description="Time to the full answer (to the response headers for streams).",
            boundaries=SECONDS,
            tag_keys=("route", "status"),
        )

    def answered(self, route: str, status: int, model: str, seconds: float) -> None:
        self.requests.inc(tags={"route": route, "status": str(status), "model": model or "-"})
        self.latency.observe(seconds, tags={"route": route, "status": str(status)})


class GeneratorMetrics(Observer):
    """The Generator scheduler's: admissions refused, queue wait, prefill/decode time, tokens, batches."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self.refusals = metrics.Counter(
            "twin_admissions_refused", description="Requests refused at admission (429).", tag_keys=("model",)
        )
        self.waits = metrics.Histogram(
            "twin_queue_wait_seconds",
            description="Admission to the start of its batch.",
            boundaries=SECONDS,
            tag_keys=("model",),
        )
        self.prefill = metrics.Histogram(
            "twin_prefill_seconds", description="Prompt processing per batch.", boundaries=SECONDS, tag_keys=("model",)
        )
        self.decode = metrics.Histogram(
            "twin_decode_seconds", description="Token decoding per batch.", boundaries=SECONDS, tag_keys=("model",)
        )
        self.tokens = metrics.Counter(
            "twin_tokens", description="Tokens in (prompt) and out (generated).", tag_keys=("model", "direction")
        )
        self.batch_rows = metrics.Histogram(
            "twin_batch_rows", description="Requests per generation batch.", boundaries=ROWS, tag_keys=("model",)
        )

    def refused(self, model: str) -> None:
        self.refusals.inc(tags={"model": model})

    def queue_wait(self, model: str, seconds: float) -> None:
        self.waits.observe(seconds, tags={"model": model})

    def batch(self, model: str, rows: int, timing: DecodeTiming, prompt_tokens: int, new_tokens: int) -> None:
        tags = {"model": model}
        self.prefill.observe(timing.prefill_s, tags=tags)
        self.decode.observe(timing.decode_s, tags=tags)
        self.batch_rows.observe(rows, tags=tags)
        self.tokens.inc(prompt_tokens, tags={**tags, "direction": "in"})
        self.tokens.inc(new_tokens, tags={**tags, "direction": "out"})
