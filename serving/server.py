"""Run the app with uvicorn (used by ``python -m serving`` and ``pipelines/run.py serve``)."""

from __future__ import annotations

import uvicorn

from serving.app import create_app
from steps.tasks.base import Predictor


def serve_forever(predictor: Predictor, host: str = "127.0.0.1", port: int = 8080, model_info: dict | None = None) -> None:
    uvicorn.run(create_app(predictor, model_info), host=host, port=port, log_level="info", access_log=False)
