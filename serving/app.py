"""The inference app, SageMaker's container contract: ``GET /ping`` and ``POST /invocations``."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from serving.errors import ServingError
from serving.requests import parse_request
from steps.tasks.base import Predictor

log = logging.getLogger(__name__)


def create_app(predictor: Predictor | None, model_info: dict | None = None) -> FastAPI:
    app = FastAPI(title="speechops inference", docs_url=None, redoc_url=None)
    app.state.predictor = predictor
    app.state.model_info = model_info or {}

    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"error": exc.message, "status": exc.status})

    @app.get("/ping")
    async def ping() -> Response:
        if app.state.predictor is None:
            return JSONResponse(status_code=503, content={"status": "loading"})
        return JSONResponse({"status": "ok", **app.state.model_info})

    @app.post("/invocations")
    async def invocations(request: Request) -> JSONResponse:
        if app.state.predictor is None:
            raise ServingError("model is not loaded yet", 503)
        audio = parse_request(await request.body(), request.headers.get("content-type"))
        started = time.perf_counter()
        result = app.state.predictor.predict(audio)
        log.info("invocation: %.2fs audio in %.3fs", audio.shape[0] / 16000, time.perf_counter() - started)
        return JSONResponse(result)

    return app
