#!/usr/bin/env python
"""speechops: run speech-model pipelines as chains of containerized stages.

  python pipelines/run.py --pipeline whisper_intensity            # run on the tiny offline profile
  python pipelines/run.py --pipeline whisper_intensity --dry-run  # show the plan and resolved config
  python pipelines/run.py --pipeline whisper_intensity --set train.epochs=3 --from train
  python pipelines/run.py list                                    # pipelines and their profiles
  python pipelines/run.py serve --pipeline whisper_intensity      # serve the registered model
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
