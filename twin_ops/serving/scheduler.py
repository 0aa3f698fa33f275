"""The Generator's queue: admission against deadlines, batches bounded by work, rows that stop when
their caller leaves.

Why a scheduler of our own (not ``@serve.batch``, which the Embedder uses): past its capacity a
server that queues everything collapses — it forms huge batches that cannot finish before their
callers' deadlines, so almost nobody gets an answer, and it goes on computing for callers that
already gave up. Here:

* **Admission.** A request carries a deadline. The scheduler knows the work already admitted
  (prompt tokens still to prefill, tokens still to decode) and measures its own service rates on
  its own batches (prefill tokens/s, decoded tokens/s). A request that cannot finish before its
  deadline — or that finds the queue full — is refused at once (429 with Retry-After), never
  queued only to time out.
* **Batches bounded by work.** The next batch is formed when the model is free, from the oldest
  waiting requests of one model, until their prompt + max new tokens reach the token budget.
* **Cancellation.** A caller that goes away (client disconnect, Ray cancels the call) or whose
  deadline passes is dropped from the queue, or its row leaves the running batch at the next
  decode step (``DecodeRow.should_stop``); the other rows go on.

A batch is not joined by new requests while it decodes (no continuous batching): see the README's
serving section for the measurement behind that choice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from twin_ops.errors import TooManyRequests, UpstreamTimeout
from twin_ops.llm.model import DecodeRow, DecodeTiming

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    """One admitted request: its row, its deadline, and how its caller learns the outcome."""

    model: Any  # the TextGenerator (anything with .llm) the row runs on
    label: str  # the model id, for metrics
    row: DecodeRow
    deadline: float  # time.monotonic() value
    done: asyncio.Future
    admitted_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    started_at: float | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.row.prompt)

    @property
    def prefill_left(self) -> int:
        return 0 if self.started_at else self.prompt_tokens

    @property
    def decode_left(self) -> int:
        """Tokens it may still decode (at most; a row that stops early frees them)."""
        return max(self.row.sampling.max_tokens - len(self.row.tokens), 0)

    def cancel(self) -> None:
        """The caller went away: leave the queue, or the running batch at its next step."""
        self.cancelled = True

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


@dataclass
class Rates:
    """The service rates the admission estimate uses: measured on this scheduler's own batches
    (an exponential moving average), seeded by a warm-up generation when a model loads."""

    prefill_tps: float = 500.0  # prompt tokens per second
    decode_tps: float = 20.0  # decoded tokens per second, all rows of a batch together
    step_s: float = 0.05  # one decode step (a lone row's time per token)
    smoothing: float = 0.3

    def observe(self, timing: DecodeTiming) -> None:
        def blend(old: float, new: float) -> float:
            return (1 - self.smoothing) * old + self.smoothing * new

        if timing.prefill_s > 0 and timing.prefill_tokens:
            self.prefill_tps = blend(self.prefill_tps, timing.prefill_tokens / timing.prefill_s)
        if timing.decode_s > 0 and timing.steps:
            self.decode_tps = blend(self.decode_tps, timing.row_steps / timing.decode_s)
            self.step_s = blend(self.step_s, timing.decode_s / timing.steps)

    def seconds(self, prefill_tokens: int, decode_tokens: int, own_decode_tokens: int) -> float:
        """How long ``prefill_tokens`` + ``decode_tokens`` of work take, the last
        ``own_decode_tokens`` of them one step at a time (a row cannot decode faster than a step)."""
        decode = max(decode_tokens / self.decode_tps, own_decode_tokens * self.step_s)
        return prefill_tokens / self.prefill_tps + decode


@dataclass
class Counters:
    """What the scheduler did, for tests, logs and the metrics."""

    admitted: int = 0
    refused: int = 0
    completed: int = 0
    cancelled: int = 0  # callers that went away (in the queue or mid-generation)
    expired: int = 0  # deadlines that passed (in the queue or mid-generation)
    batches: int = 0
    decoded_tokens: int = 0
    stopped_rows: int = 0  # rows that left a running batch early (cancelled or expired)


class Observer:
    """Hooks for metrics (serving/metrics.py); the default does nothing."""

    def refused(self, model: str) -> None: ...

    def batch(self, model: str, rows: int, timing: DecodeTiming, prompt_tokens: int, new_tokens: int) -> None: ...

    def queue_wait(self, model: str, seconds: float) -> None: ...


class Scheduler:
    """``admit`` a row (or be refused), then ``await ticket.done`` for its Completion."""

    def __init__(
        self,
        token_budget: int,
        max_rows: int,
        max_queued: int,
        gather_s: float = 0.0,
        observer: Observer | None = None,
        headroom: float = 1.0,
    ) -> None:
        self.token_budget = token_budget
        self.headroom = headroom  # admit only what the estimate finishes within this share of the time left
        self.max_rows = max_rows
        self.max_queued = max_queued
        self.gather_s = gather_s  # before each batch: lets a burst that is still arriving join it
        self.observer = observer or Observer()
        self.rates = Rates()
        self.counters = Counters()
        self.queue: deque[Ticket] = deque()
        self.running: list[Ticket] = []
        self.batch_sizes: deque[int] = deque(maxlen=1000)
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task | None = None

    # --- admission ------------------------------------------------------------------------------

    def _live(self, tickets) -> list[Ticket]:
        """Tickets that still cost work: a caller that left or a deadline that passed frees its share
        at once, even before the worker drops it from the queue or the batch."""
        return [ticket for ticket in tickets if not (ticket.cancelled or ticket.expired())]

    def estimate_s(self, prompt_tokens: int, max_tokens: int) -> float:
        """Seconds until a request of this size would finish, behind everything admitted."""
        ahead = self._live([*self.running, *self.queue])
        prefill = prompt_tokens + sum(ticket.prefill_left for ticket in ahead)
        decode = max_tokens + sum(ticket.decode_left for ticket in ahead)
        return self.rates.seconds(prefill, decode, max_tokens)

    def check(self, prompt_tokens: int, max_tokens: int, deadline: float, label: str) -> None:
        """Raise TooManyRequests (429, with the seconds after which to retry) when a request of
        this size could not finish by ``deadline`` (a time.monotonic() value) or the queue is full.
        The Ingress asks this before retrieval too, so a refusal costs no retrieval."""
        now = time.monotonic()
        waiting = len(self._live(self.queue))
        if waiting >= self.max_queued:
            self._refuse(label)
            retry = self.estimate_s(0, 0)
            raise TooManyRequests(
                f"the {label} queue is full ({waiting} requests waiting); retry in {math.ceil(retry)}s",
                retry_after=max(1, math.ceil(retry)),
            )
        needed = self.estimate_s(prompt_tokens, max_tokens)
        allowed = (deadline - now) * self.headroom
        if needed > allowed:
            self._refuse(label)
            late = (needed - allowed) / self.headroom
            raise TooManyRequests(
                f"{label} is busy: this request would finish in about {needed:.0f}s, too close to its "
                f"{deadline - now:.0f}s deadline (serving.timeouts.generation_s); retry in {math.ceil(late)}s",
                retry_after=max(1, math.ceil(late)),
            )

    def admit(self, model: Any, row: DecodeRow, deadline: float, label: str) -> Ticket:
        """Queue ``row`` or raise TooManyRequests (see ``check``)."""
        self.check(len(row.prompt), row.sampling.max_tokens, deadline, label)
        ticket = Ticket(model, label, row, deadline, asyncio.get_running_loop().create_future())
        row.should_stop = lambda: ticket.cancelled or ticket.expired()
        self.queue.append(ticket)
        self.counters.admitted += 1
        self._wakeup.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        return ticket

    def _refuse(self, label: str) -> None:
        self.counters.refused += 1
        self.observer.refused(label)

    # --- the worker -----------------------------------------------------------------------------

    def _drop_gone(self) -> None:
        """Queued tickets whose caller left or whose deadline passed never reach the model."""
        kept: deque[Ticket] = deque()
        for ticket in self.queue:
            if ticket.cancelled:
                self.counters.cancelled += 1
                _settle(ticket.done, None)
            elif ticket.expired():
                self.counters.expired += 1
                _fail(ticket.done, UpstreamTimeout("the request's deadline passed while it waited for the model"))
            else:
                kept.append(ticket)
        self.queue = kept

    def _next_batch(self) -> list[Ticket]:
        """The oldest ticket, and after it the next ones on the same model, within the budget."""
        if not self.queue:
            return []
        first = self.queue[0]
        batch, used = [], 0
        for ticket in list(self.queue):
            cost = ticket.prompt_tokens + ticket.row.sampling.max_tokens
            if ticket.model is not first.model:
                continue
            if batch and (used + cost > self.token_budget or len(batch) >= self.max_rows):
                break
            batch.append(ticket)
            used += cost
        for ticket in batch:
            self.queue.remove(ticket)
        return batch

    async def _work(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.gather_s:
                await asyncio.sleep(self.gather_s)
            self._drop_gone()
            batch = self._next_batch()
            if not self.queue:
                self._wakeup.clear()
            if not batch:
                continue
            await self._run(batch)

    async def _run(self, batch: list[Ticket]) -> None:
        now = time.monotonic()
        model, label = batch[0].model, batch[0].label
        for ticket in batch:
            ticket.started_at = now
            ticket.row.queued_s = now - ticket.admitted_at
            self.observer.queue_wait(label, ticket.row.queued_s)
        self.running = batch
        self.batch_sizes.append(len(batch))
        self.counters.batches += 1
        timing = DecodeTiming()
        started = time.perf_counter()
        try:
            await asyncio.to_thread(model.llm.generate_rows, [ticket.row for ticket in batch], timing)
        except Exception as exc:  # the whole batch failed: every caller gets the error
            log.exception("batch of %d failed", len(batch))
            for ticket in batch:
                _fail(ticket.done, exc)
            return
        finally:
            self.running = []
        # The rates are what the callers get: wall-clock time of the batch (thread hand-off, the
        # GIL shared with the event loop, other processes on the node), not only the model's.
        self.rates.observe(timing.scaled(time.perf_counter() - started))
        new_tokens = sum(len(ticket.row.tokens) for ticket in batch)
        self.counters.decoded_tokens += new_tokens
        self.observer.batch(label, len(batch), timing, sum(t.prompt_tokens for t in batch), new_tokens)
        for ticket in batch:
            if ticket.row.finish_reason == "cancelled":
                self.counters.stopped_rows += 1
                if ticket.cancelled:
                    self.counters.cancelled += 1
                    _settle(ticket.done, None)
                else:
                    self.counters.expired += 1
                    _fail(ticket.done, UpstreamTimeout("the request's deadline passed during generation"))
            else:
                self.counters.completed += 1
                _settle(ticket.done, ticket.row)

    def seed(self, timing: DecodeTiming) -> None:
        """Start the rate estimate from a measured generation (the warm-up after a model load)."""
        self.rates.smoothing, smoothing = 1.0, self.rates.smoothing
        self.rates.observe(timing)
        self.rates.smoothing = smoothing

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters.__dict__,
            "queued": len(self.queue),
            "running": len(self.running),
            "prefill_tps": round(self.rates.prefill_tps, 1),
            "decode_tps": round(self.rates.decode_tps, 1),
            "step_s": round(self.rates.step_s, 4),
        }


def _settle(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
