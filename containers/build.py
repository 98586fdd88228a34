#!/usr/bin/env python3
"""Build every speechops image with docker or podman, whichever is here, tagged the way the
SageMaker backend and the compose backend name them (``pipelines/images.py``).

Order: the two bases from ``containers/base/Dockerfile`` (``speechops-base-cpu``,
``speechops-base-cuda``), then one thin image per stage plus ``speechops-serve`` on top of them.

Examples::

    python containers/build.py                                   # all images, localhost/...:latest
    python containers/build.py --only train --only serve         # those two (and their base)
    python containers/build.py --base-image localhost/speechops-debian:bookworm \\
        --ca-bundle /etc/ssl/certs/ca-certificates.crt            # no registry, TLS-inspecting proxy
    python containers/build.py --registry 123456789012.dkr.ecr.eu-west-1.amazonaws.com --tag 1a2b3c4
    python containers/build.py --dry-run                         # print the commands only
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from pipelines import images  # noqa: E402
from pipelines.containers import EngineError, detect  # noqa: E402

CERTS = REPO / "containers" / "certs"
CA_NAME = "extra-ca.crt"


def plan(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(label, build arguments) in build order."""
    wanted = args.only or list(images.IMAGES)
    unknown = [i for i in wanted if i not in images.IMAGES]
    if unknown:
        raise SystemExit(f"unknown image(s) {', '.join(unknown)}; images: {', '.join(images.IMAGES)}")
    flavors = sorted({images.base_flavor(i) for i in wanted}, key=images.BASE_FLAVORS.index)
    common = [f"--build-arg={a}" for a in args.build_arg]
    steps: list[tuple[str, list[str]]] = []
    if not args.skip_bases:
        for flavor in flavors:
            build = ["-f", "containers/base/Dockerfile", "-t", images.base_image_uri(flavor, args.registry, args.tag),
                     f"--build-arg=FLAVOR={flavor}", f"--build-arg=BASE_IMAGE={args.base_image}"]
            if args.ca_bundle:
                build.append(f"--build-arg=EXTRA_CA_BUNDLE={CA_NAME}")
            if flavor == "cpu" and args.cpu_index_url:
                build.append(f"--build-arg=PIP_EXTRA_INDEX_URL={args.cpu_index_url}")
            steps.append((f"base-{flavor}", build + common))
    for image in wanted:
        base = images.base_image_uri(images.base_flavor(image), args.registry, args.tag)
        steps.append((image, ["-f", f"containers/{image}/Dockerfile", "-t",
                              images.image_uri(image, args.registry, args.tag),
                              f"--build-arg=BASE={base}", *common]))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python containers/build.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", default=images.LOCAL_REGISTRY,
                        help=f"image name prefix (default {images.LOCAL_REGISTRY}; an ECR registry to push)")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--only", action="append", default=[], metavar="IMAGE",
                        help=f"build only this image and its base (repeatable): {' '.join(images.IMAGES)}")
    parser.add_argument("--base-image", default="debian:bookworm-slim",
                        help="Debian bookworm image the bases start from (containers/debian_base.sh makes "
                             "localhost/speechops-debian:bookworm without a registry)")
    parser.add_argument("--ca-bundle", type=Path, help="a PEM bundle to trust in builds and images (proxies)")
    parser.add_argument("--cpu-index-url", default="",
                        help="an extra package index with CPU-only torch wheels for the CPU base (smaller images)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to every build (repeatable)")
    parser.add_argument("--skip-bases", action="store_true", help="reuse the bases already built")
    parser.add_argument("--engine", choices=["auto", "docker", "podman"], default=None)
    parser.add_argument("--dry-run", action="store_true", help="print the commands, build nothing")
    args = parser.parse_args(argv)
    try:
        engine = detect(args.engine)
    except EngineError as exc:
        if not args.dry_run:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        from pipelines.containers import Engine
        engine = Engine("docker", "docker")
    if args.ca_bundle:
        if not args.ca_bundle.is_file():
            print(f"error: --ca-bundle {args.ca_bundle} is not a file", file=sys.stderr)
            return 2
        if not args.dry_run:
            shutil.copyfile(args.ca_bundle, CERTS / CA_NAME)
    started = time.time()
    for label, build in plan(args):
        command = engine.command("build", *engine.build_flags(), *build, ".")
        print("+ " + " ".join(command), flush=True)
        if args.dry_run:
            continue
        t0 = time.time()
        code = subprocess.call(command, cwd=REPO)
        if code != 0:
            print(f"error: building {label} failed (exit {code}); the output above says why", file=sys.stderr)
            return code
        print(f"built {label} in {time.time() - t0:.0f}s", flush=True)
    if not args.dry_run:
        print(f"all images built in {time.time() - started:.0f}s with {engine.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
