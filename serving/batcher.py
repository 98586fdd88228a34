"""Inference off the event loop, with backpressure and dynamic batching.

Requests are admitted while fewer than ``max_pending`` are in the server (being decoded, waiting or being
answered); beyond that the app answers 503 at once with ``Retry-After``, so latency cannot grow without
bound. Each of ``workers`` threads takes the oldest waiting request, gathers whatever else arrives within
``batch_wait_ms`` up to ``max_batch`` requests, and runs the handler's ``predict_batch`` on them together
(one padded forward pass serves them all). torch releases the GIL while it computes, so the event loop
answers ``/ping`` in milliseconds whatever the load.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    inputs: Any
    future: Future


class Batcher:
    def __init__(self, handler, workers: int = 1, max_batch: int = 8, batch_wait_ms: float = 5.0):
        self.handler, self.max_batch, self.wait_s = handler, max(1, max_batch), max(0.0, batch_wait_ms) / 1000
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.batches = 0
        self.threads = [threading.Thread(target=self._work, name=f"inference-{i}", daemon=True)
                        for i in range(max(1, workers))]
        for thread in self.threads:
            thread.start()

    def submit(self, inputs: Any) -> Future:
        future: Future = Future()
        self.jobs.put(Job(inputs, future))
        return future

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)

    def _gather(self, first: Job) -> list[Job]:
        batch = [first]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self.jobs.get(timeout=left) if left > 0 else self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:  # closing: finish this batch, let the next get() see the end
                self.jobs.put(None)
                break
            batch.append(job)
        return batch

    def _work(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            batch = [job for job in self._gather(first) if job.future.set_running_or_notify_cancel()]
            if batch:
                self._run(batch)

    def _run(self, batch: list[Job]) -> None:
        self.batches += 1
        try:
            outputs = self.handler.predict_batch([job.inputs for job in batch])
        except Exception as exc:  # noqa: BLE001 - one bad request must not fail the others in its batch
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            log.warning("a batch of %d failed (%s); answering its requests one by one", len(batch), exc)
            for job in batch:
                try:
                    job.future.set_result(self.handler.predict_batch([job.inputs])[0])
                except Exception as single:  # noqa: BLE001
                    job.future.set_exception(single)
            return
        for job, output in zip(batch, outputs):
            job.future.set_result(output)
