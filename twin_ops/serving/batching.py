"""Batches formed when the model is free, from everything waiting: the Generator's batching.

Why not ``@serve.batch`` here (the Embedder uses it): it forms a batch from what arrives within
``batch_wait_timeout_s`` of the first request and queues that batch behind the running one. When
requests trickle in (they leave retrieval one by one), that gives a queue of batches of 1-3 behind
a generate call of a few hundred milliseconds. Here the next batch is formed only when the previous
one has finished, from every request that arrived meanwhile (up to ``max_size``): batches grow with
the load by themselves, and a lone request waits for no timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class AdaptiveBatcher(Generic[In, Out]):
    """``await submit(item)`` → ``run(batch)[i]``, with ``run`` called on one batch at a time in a
    worker thread (it is blocking model code; the event loop keeps taking requests)."""

    def __init__(self, run: Callable[[list[In]], Sequence[Out]], max_size: int, gather_s: float = 0.0) -> None:
        self.run = run
        self.max_size = max_size
        self.gather_s = gather_s  # before each batch: lets a burst that is still arriving join it
        self.pending: deque[tuple[In, asyncio.Future[Out]]] = deque()
        self.wakeup = asyncio.Event()
        self.worker: asyncio.Task | None = None
        self.sizes: deque[int] = deque(maxlen=1000)  # the latest batch sizes, for logs and tests

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        self.wakeup.set()
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._work())
        return await future

    async def _work(self) -> None:
        while True:
            await self.wakeup.wait()
            if self.gather_s:
                await asyncio.sleep(self.gather_s)
            batch = []
            while self.pending and len(batch) < self.max_size:
                item, future = self.pending.popleft()
                if not future.done():  # a caller that gave up (timeout, disconnect) is skipped
                    batch.append((item, future))
            if not self.pending:
                self.wakeup.clear()
            if not batch:
                continue
            self.sizes.append(len(batch))
            try:
                results = await asyncio.to_thread(self.run, [item for item, _ in batch])
            except Exception as exc:  # the whole batch failed: every caller gets the error
                log.exception("batch of %d failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
