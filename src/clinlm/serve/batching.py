"""A small request batcher: requests that arrive within a few milliseconds share one generate call.

    batcher = Batcher(model, window_ms=5, max_batch=8)
    answer = await batcher.submit(row, waves, max_tokens=64, temperature=0.0)

One worker task drains an asyncio queue: it waits for the first request, gathers whatever else
arrives within `window_ms` (up to `max_batch`), groups them by (max_tokens, temperature) because
`clinlm.infer.generate` takes one setting per call, and runs each group in a worker thread so the
event loop keeps accepting requests. Only one generate call runs at a time (the model is shared
and a CPU has no spare cores for two).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clinlm.infer import generate
from clinlm.serve.memory_features import view_with_waves

log = logging.getLogger("clinlm.serve")


@dataclass
class _Job:
    row: dict[str, Any]
    waves: dict[str, tuple[np.ndarray, int]]
    max_tokens: int
    temperature: float
    future: asyncio.Future = field(repr=False)


class Batcher:
    def __init__(self, model: Any, window_ms: float = 5.0, max_batch: int = 8):
        self.model = model
        self.window = window_ms / 1000.0
        self.max_batch = max_batch
        self.queue: asyncio.Queue[_Job] | None = None
        self.worker: asyncio.Task | None = None
        self.batches = 0  # generate calls made (for tests and the load benchmark)
        self.requests = 0

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            try:
                await self.worker
            except asyncio.CancelledError:
                pass

    async def submit(self, row: dict[str, Any], waves: dict[str, tuple[np.ndarray, int]], max_tokens: int, temperature: float) -> str:
        if self.queue is None:
            self.start()
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(row, waves, max_tokens, temperature, fut))
        return await fut

    async def _gather(self) -> list[_Job]:
        jobs = [await self.queue.get()]
        deadline = time.monotonic() + self.window
        while len(jobs) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
        return jobs

    async def _run(self) -> None:
        while True:
            jobs = await self._gather()
            groups: dict[tuple[int, float], list[_Job]] = {}
            for j in jobs:
                if not j.future.cancelled():  # the client went away while queued
                    groups.setdefault((j.max_tokens, j.temperature), []).append(j)
            for (max_tokens, temperature), group in groups.items():
                waves = {k: v for j in group for k, v in j.waves.items()}
                t0 = time.perf_counter()
                try:
                    answers = await asyncio.to_thread(
                        generate, view_with_waves(self.model, waves), [j.row for j in group],
                        max_new_tokens=max_tokens, batch_size=len(group), temperature=temperature,
                    )
                except Exception as exc:  # one bad batch must not stop the worker
                    log.exception("generate failed for a batch of %d", len(group))
                    for j in group:
                        if not j.future.done():
                            j.future.set_exception(exc)
                    continue
                self.batches += 1
                self.requests += len(group)
                log.info("batch of %d answered in %.3f s", len(group), time.perf_counter() - t0)  # no content logged
                for j, a in zip(group, answers):
                    if not j.future.done():
                        j.future.set_result(a)
