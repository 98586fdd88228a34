"""The inference app, SageMaker's container contract: ``GET /ping`` and ``POST /invocations``.

The app knows no task's shape: the task's handler (``steps/tasks/<task>/handler.py``) decodes the
request, predicts and encodes the answer (JSON or audio, by the ``Accept`` header). The app owns the
server machinery and the limits (``serving/limits.py``).
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from serving.errors import PayloadTooLarge, ServingError
from serving.limits import limits_from_environment
from steps.common.payload import Limits, RequestError
from steps.tasks.io import Handler

log = logging.getLogger(__name__)


def create_app(handler: Handler | None, model_info: dict | None = None, limits: Limits | None = None) -> FastAPI:
    app = FastAPI(title="speechops inference", docs_url=None, redoc_url=None)
    app.state.handler = handler
    app.state.model_info = model_info or {}
    app.state.limits = limits or limits_from_environment()

    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"error": exc.message, "status": exc.status})

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
        handler: Handler | None = app.state.handler
        if handler is None:
            raise ServingError("model is not loaded yet", 503)
        limits: Limits = app.state.limits
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limits.max_body_bytes}")
        body = await request.body()
        if len(body) > limits.max_body_bytes:
            raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {limits.max_body_bytes}")
        accept = request.headers.get("accept")
        handler.check_accept(accept)  # a 406 before any work
        started = time.perf_counter()
        inputs = handler.decode(body, request.headers.get("content-type"), limits)
        answer = handler.encode(handler.predict(inputs), accept)
        log.info("invocation: %d bytes in %.3fs", len(body), time.perf_counter() - started)
        return Response(answer.body, media_type=answer.content_type)

    return app
