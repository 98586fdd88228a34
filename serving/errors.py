"""Serving errors carry their HTTP status; ``serving.app`` maps them to responses in one place."""

from __future__ import annotations


class ServingError(Exception):
    status: int = 500

    def __init__(self, message: str, status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers
        if status is not None:
            self.status = status


class BadRequest(ServingError):
    status = 400


class UnsupportedMediaType(ServingError):
    status = 415


class PayloadTooLarge(ServingError):
    status = 413


class ModelNotReady(ServingError):
    status = 503
