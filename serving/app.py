"""The inference app, SageMaker's container contract: ``GET /ping`` and ``POST /invocations``.

The app knows no task's shape: the task's handler (``steps/tasks/<task>/handler.py``) decodes the
request, predicts and encodes the answer (JSON or audio, by the ``Accept`` header). The app owns the
server machinery (``serving/limits.py``):

* limits before work: a body larger than the limit is refused by its ``Content-Length`` or as soon as
  the streamed read passes the limit, never held whole; audio headers are checked before decoding
  (``steps.common.payload``);
* decoding and inference run off the event loop (a thread for decoding, the batcher's workers for the
  model: ``serving/batcher.py``), so ``/ping`` answers at once under any load;
* backpressure: at most ``max_pending`` requests in the server, beyond that 503 with ``Retry-After``
  at once; a request not answered within ``request_timeout_s`` gets 503;
* one log line per request: status, audio seconds, latency.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from serving.batcher import Batcher
from serving.errors import PayloadTooLarge, ServingError
from serving.limits import Scheduling, limits_from_environment, scheduling_from_environment
from steps.common.audio import TARGET_SAMPLE_RATE
from steps.common.payload import Limits, RequestError
from steps.tasks.io import Handler

log = logging.getLogger(__name__)
RETRY_AFTER_S = 1


class Admission:
    """Counts the requests in the server; refuses one beyond ``limit`` (thread-safe: released by workers)."""

    def __init__(self, limit: int):
        self.limit, self.count, self.lock = limit, 0, threading.Lock()

    def try_enter(self) -> bool:
        with self.lock:
            if self.count >= self.limit:
                return False
            self.count += 1
            return True

    def leave(self, *_: Any) -> None:
        with self.lock:
            self.count -= 1


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit} (send a shorter clip, or "
                              "compressed audio such as FLAC or Opus)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the {limit} byte limit (send a shorter clip, or "
                                  "compressed audio such as FLAC or Opus)")
        chunks.append(chunk)
    return b"".join(chunks)


def audio_seconds(inputs: Any) -> float:
    """Seconds of audio in a handler's decoded inputs (one clip, or several in a tuple/dict)."""
    if isinstance(inputs, np.ndarray):
        return inputs.shape[0] / TARGET_SAMPLE_RATE
    if isinstance(inputs, dict):
        inputs = list(inputs.values())
    if isinstance(inputs, (list, tuple)):
        return sum(audio_seconds(x) for x in inputs)
    return 0.0


def create_app(handler: Handler | None, model_info: dict | None = None, limits: Limits | None = None,
               scheduling: Scheduling | None = None) -> FastAPI:
    scheduling = scheduling or scheduling_from_environment()
    batcher = Batcher(handler, scheduling.workers, scheduling.max_batch, scheduling.batch_wait_ms) if handler else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if batcher is not None:
            batcher.close()

    app = FastAPI(title="speechops inference", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.handler = handler
    runtime = getattr(handler, "runtime", None)  # the Whisper handlers' inference engine (ctranslate.Runtime)
    app.state.model_info = {**(model_info or {}), **({"runtime": runtime.label} if runtime is not None else {})}
    app.state.limits = limits or limits_from_environment()
    app.state.scheduling = scheduling
    app.state.admission = Admission(scheduling.max_pending)
    app.state.batcher = batcher

    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"error": exc.message, "status": exc.status},
                            headers=exc.headers)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"error": exc.message, "status": exc.status})

    @app.get("/ping")
    async def ping() -> Response:
        if app.state.handler is None:
            return JSONResponse(status_code=503, content={"status": "loading"})
        return JSONResponse({"status": "ok", **app.state.model_info})

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        started = time.perf_counter()
        status, seconds = 500, 0.0
        try:
            response = await _answer(request)
            status = response.status_code
            seconds = getattr(response, "audio_seconds", 0.0)
            return response
        except (ServingError, RequestError) as exc:
            status = exc.status
            raise
        except ClientDisconnect:
            status = 499
            log.info("client disconnected before sending its whole request")
            return Response(status_code=499)
        finally:
            log.info("POST /invocations %d, %.2f s of audio, %.3f s", status, seconds, time.perf_counter() - started)

    async def _answer(request: Request) -> Response:
        handler: Handler | None = app.state.handler
        if handler is None:
            raise ServingError("model is not loaded yet", 503, headers={"Retry-After": str(RETRY_AFTER_S)})
        admission: Admission = app.state.admission
        if not admission.try_enter():
            raise ServingError(f"the server is busy ({admission.limit} requests in progress); retry shortly", 503,
                               headers={"Retry-After": str(RETRY_AFTER_S)})
        handed_over = False
        try:
            limits: Limits = app.state.limits
            body = await read_body(request, limits.max_body_bytes)
            accept = request.headers.get("accept")
            handler.check_accept(accept)  # a 406 before any work
            inputs = await run_in_threadpool(handler.decode, body, request.headers.get("content-type"), limits)
            future = app.state.batcher.submit(inputs)
            future.add_done_callback(admission.leave)  # the slot frees when the work is really done
            handed_over = True
            timeout = app.state.scheduling.request_timeout_s
            try:
                outputs = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
            except asyncio.TimeoutError:
                raise ServingError(f"no answer within {timeout:g} s (the server is overloaded or the clip is very "
                                   "long); retry later", 503, headers={"Retry-After": str(RETRY_AFTER_S)}) from None
            answer = handler.encode(outputs, accept)
        finally:
            if not handed_over:
                admission.leave()
        response = Response(answer.body, media_type=answer.content_type)
        response.audio_seconds = audio_seconds(inputs)
        return response

    return app
