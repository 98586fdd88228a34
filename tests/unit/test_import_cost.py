"""Cheap things are cheap: building a pipeline and its parameter models imports no heavy library.

Stage modules keep their top level light (the ``StageSpec`` and the parameter model); torch, scipy
and transformers are imported inside the functions that need them. Checked in a fresh interpreter,
since this test process may have imported anything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

HEAVY = ("torch", "scipy", "transformers")


def test_building_every_pipeline_imports_no_heavy_library():
    script = f"""
import json, sys
from pipelines.cli import build_parser
from pipelines.registry import PIPELINES, get_pipeline
for name in PIPELINES:
    pipeline = get_pipeline(name)
    pipeline.validated_params()
    for stage in pipeline.stages:
        stage.spec.params(pipeline.task).model_json_schema()
build_parser()
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], (f"building the pipelines imported {loaded}; move the import into the function that "
                          f"needs it (python -X importtime shows who imports it)")
