"""Container entrypoint of the serving image: ``python -m serving`` on 0.0.0.0:8080 (SageMaker)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from serving.loader import load_handler_from_dir
from serving.server import serve_forever
from steps.common.console import setup_logging


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    # SageMaker starts hosting containers as `<image> serve`: accepted and ignored
    parser.add_argument("mode", nargs="?", choices=["serve"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model")))
    parser.add_argument("--host", default=os.environ.get("SPEECHOPS_SERVE_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", 8080)))
    args = parser.parse_args()
    setup_logging()
    serve_forever(load_handler_from_dir(args.model_dir), args.host, args.port, {"model_dir": str(args.model_dir)})


if __name__ == "__main__":
    main()
