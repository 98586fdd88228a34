"""Run the app with uvicorn (used by ``python -m serving`` and ``pipelines/run.py serve``).

SIGTERM (what a container runtime or SageMaker sends) stops the server gracefully: it stops accepting,
finishes the requests in flight, and the process exits 0.
"""

from __future__ import annotations

import signal

import uvicorn

from serving.app import create_app
from steps.tasks.io import Handler


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises a captured SIGTERM after its graceful shutdown (exit status 143); a stop asked for
    is a clean exit here, so it is not re-raised."""

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)


def serve_forever(handler: Handler, host: str = "127.0.0.1", port: int = 8080, model_info: dict | None = None) -> None:
    config = uvicorn.Config(create_app(handler, model_info), host=host, port=port, log_level="info",
                            access_log=False, timeout_graceful_shutdown=30)
    GracefulServer(config).run()
