"""Container image names, in one place: one ECR repository per stage image.

Every backend that runs containers, the image build/push script (``infra/push_images.sh``) and the
CloudFormation that creates the repositories (``infra/ecr.yaml``) name images through this module:

==============================  =====================================================  ==========
image                           runs                                                   base
==============================  =====================================================  ==========
``speechops-<stage>``           ``python -m steps.<stage>`` for prepare, tokenizer,    CPU
                                evaluate, export, register, deploy
``speechops-train``             ``python -m steps.train`` (and every tuning job)       CUDA
``speechops-serve``             ``python -m serving`` on port 8080 (endpoints)         CPU
==============================  =====================================================  ==========

URIs are ``<registry>/speechops-<image>:<tag>`` or, pinned to one image, ``<registry>/speechops-
<image>@sha256:<digest>``; the registry of an account is ``<account>.dkr.ecr.<region>.amazonaws.com``.
Tags are immutable in ECR (``infra/ecr.yaml``): the default tag is the checkout's git commit
(``commit_tag()``, 12 hex digits), which ``infra/push_images.sh`` pushes and the SageMaker backend runs.
``latest`` moves, so a backend runs it only when asked to explicitly (``MUTABLE_TAGS``).
``python -m pipelines.images --registry R --tag T`` prints ``<image> <repository> <uri>`` lines for
scripts; ``--print-commit-tag`` prints the default tag.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

PREFIX = "speechops"
CPU_IMAGES = ("prepare", "tokenizer", "evaluate", "export", "register", "deploy")
GPU_IMAGES = ("train",)
SERVE_IMAGE = "serve"
IMAGES = (*CPU_IMAGES, *GPU_IMAGES, SERVE_IMAGE)
# Stages that run another stage's image: hyper-parameter tuning launches training jobs.
SHARED_IMAGES = {"tune": "train"}
# The two shared bases every image builds on (containers/base/Dockerfile, FLAVOR=cpu|cuda).
BASE_FLAVORS = ("cpu", "cuda")
# Where images live before they are pushed (containers/build.py's default; the compose backend's).
LOCAL_REGISTRY = "localhost"

# The job images' entrypoint (containers/base/job-entrypoint.sh): started as root, it hands the stage's output
# folders to uid 1000 and drops to it. Backends that override an image's entrypoint start with it.
JOB_ENTRYPOINT = "/opt/speechops/job-entrypoint.sh"

# Tags that name a different image after every push; ECR refuses to move them in an immutable repository.
MUTABLE_TAGS = ("latest",)
COMMIT_TAG_LENGTH = 12

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY = re.compile(r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._/-]+)?$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def image_for(stage: str) -> str:
    """The image a stage (step name) runs: ``train`` for ``tune``, otherwise the step itself."""
    image = SHARED_IMAGES.get(stage, stage)
    if image not in IMAGES:
        raise KeyError(f"no image for stage {stage!r}; images: {', '.join(IMAGES)}")
    return image


def job_command(step: str) -> list[str]:
    """What a job image runs for a stage: ``[JOB_ENTRYPOINT, "python", "-m", "steps.<step>"]``."""
    return [JOB_ENTRYPOINT, "python", "-m", f"steps.{step}"]


def base_flavor(image: str) -> str:
    """``cuda`` for the GPU images (train), ``cpu`` for every other image."""
    return "cuda" if image_for(image) in GPU_IMAGES else "cpu"


def base_image_uri(flavor: str, registry: str = LOCAL_REGISTRY, tag: str = "latest") -> str:
    if flavor not in BASE_FLAVORS:
        raise ValueError(f"base flavor must be one of {', '.join(BASE_FLAVORS)}, got {flavor!r}")
    return f"{registry.rstrip('/')}/{PREFIX}-base-{flavor}:{tag}"


def repository(stage: str) -> str:
    """The ECR repository name of a stage's image, e.g. ``speechops-train``."""
    return f"{PREFIX}-{image_for(stage)}"


def repositories() -> list[str]:
    """Every repository this project pushes to (one per image)."""
    return [f"{PREFIX}-{image}" for image in IMAGES]


def ecr_registry(account: str, region: str) -> str:
    """The private ECR registry host of an account in a region."""
    if not re.fullmatch(r"\d{12}", account):
        raise ValueError(f"AWS account id must be 12 digits, got {account!r}")
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def image_uri(stage: str, registry: str, tag: str = "latest") -> str:
    """``<registry>/speechops-<image>:<tag>``: the one naming rule for stage and serving images."""
    registry = registry.rstrip("/")
    if not _REGISTRY.match(registry):
        raise ValueError(f"image registry {registry!r} is not a registry host (e.g. "
                         "123456789012.dkr.ecr.eu-west-1.amazonaws.com)")
    if not _TAG.match(tag):
        raise ValueError(f"image tag {tag!r} is not a valid tag (letters, digits, '_', '.', '-'; at most 128)")
    return f"{registry}/{repository(stage)}:{tag}"


def image_digest_uri(stage: str, registry: str, digest: str) -> str:
    """``<registry>/speechops-<image>@sha256:...``: one image, whatever happens to its tags."""
    if not _DIGEST.match(digest):
        raise ValueError(f"image digest {digest!r} is not sha256:<64 hex digits>")
    return image_uri(stage, registry, "latest").rsplit(":", 1)[0] + "@" + digest


def commit_tag(repo: Path | None = None) -> str | None:
    """The default image tag: the first 12 hex digits of the checkout's git commit (None outside git)."""
    try:
        out = subprocess.run(["git", "rev-parse", f"--short={COMMIT_TAG_LENGTH}", "HEAD"],
                             cwd=repo or Path(__file__).resolve().parents[1], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    tag = out.stdout.strip()
    return tag if out.returncode == 0 and _TAG.match(tag) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", help="e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    parser.add_argument("--tag", default=None, help="default: the git commit (commit_tag)")
    parser.add_argument("--print-commit-tag", action="store_true", help="print the default tag and exit")
    args = parser.parse_args(argv)
    if args.print_commit_tag:
        tag = commit_tag()
        print(tag or "")
        return 0 if tag else 1
    if not args.registry:
        parser.error("--registry is required")
    args.tag = args.tag or commit_tag() or "latest"
    try:
        for image in IMAGES:
            print(image, repository(image), image_uri(image, args.registry, args.tag))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
