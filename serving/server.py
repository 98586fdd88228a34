"""Run the app with uvicorn (used by ``python -m serving`` and ``pipelines/run.py serve``)."""

from __future__ import annotations

import uvicorn

from serving.app import create_app
from steps.tasks.io import Handler


def serve_forever(handler: Handler, host: str = "127.0.0.1", port: int = 8080, model_info: dict | None = None) -> None:
    uvicorn.run(create_app(handler, model_info), host=host, port=port, log_level="info", access_log=False)
