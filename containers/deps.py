#!/usr/bin/env python3
"""Which Python packages each image installs, and at which versions: one mechanism for every image.

* ``[tool.speechops.images]`` in ``pyproject.toml`` names, per image, the distributions it needs
  (``base`` for both shared bases, then one list per stage image). The version ranges come from the
  project's own dependency lists, so nothing is written twice.
* ``constraints.txt`` at the repository root is the project's one lock: it pins every distribution
  the project and all its extras need (so every image's closure too) to the versions the test suite
  passed with. The README's install, CI and every image use it. ``python containers/deps.py lock``
  rewrites it from the current environment, after the test suite passed there; review the diff.

Usage (the Dockerfiles run the first form)::

    python deps.py install base prepare     # pip install the ranges of those images, pinned
    python deps.py install --cache train    # the same, keeping pip's cache (a build cache mount)
    python deps.py requirements train       # print the requirement lines, install nothing
    python deps.py lock                     # rewrite ../constraints.txt (the lock) from this environment
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYPROJECT_CANDIDATES = (HERE.parent / "pyproject.toml", HERE / "pyproject.toml")
# the repository's lock; in an image both files are copied side by side into /opt/speechops/
CONSTRAINTS_CANDIDATES = (HERE.parent / "constraints.txt", HERE / "constraints.txt")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def load_pyproject(path: Path | None = None) -> dict:
    for candidate in ([path] if path else PYPROJECT_CANDIDATES):
        if candidate and candidate.is_file():
            return tomllib.loads(candidate.read_text())
    raise SystemExit(f"pyproject.toml not found (looked at {', '.join(map(str, PYPROJECT_CANDIDATES))})")


def requirement_ranges(project: dict) -> dict[str, str]:
    """Canonical name -> requirement line, from the dependencies and then the optional groups."""
    lines = list(project["project"].get("dependencies", []))
    for group in project["project"].get("optional-dependencies", {}).values():
        lines += group
    ranges: dict[str, str] = {}
    for line in lines:
        name = re.match(r"^\s*([A-Za-z0-9_.-]+)", line).group(1)
        if canonical(name) == "speechops":
            continue
        ranges.setdefault(canonical(name), line.strip())
    return ranges


def image_table(project: dict) -> dict[str, list[str]]:
    try:
        return project["tool"]["speechops"]["images"]
    except KeyError:
        raise SystemExit("pyproject.toml has no [tool.speechops.images] table") from None


def requirements(images: list[str], project: dict) -> list[str]:
    table, ranges = image_table(project), requirement_ranges(project)
    unknown = [image for image in images if image not in table]
    if unknown:
        raise SystemExit(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(table)}")
    lines: list[str] = []
    for image in images:
        for name in table[image]:
            if canonical(name) not in ranges:
                raise SystemExit(f"[tool.speechops.images].{image} names {name!r}, which no dependency "
                                 "list of pyproject.toml declares: add it there first")
            line = ranges[canonical(name)]
            if line not in lines:
                lines.append(line)
    return lines


def install(images: list[str], project: dict, cache: bool = False) -> int:
    lines = requirements(images, project)
    if not lines:
        print(f"images {' '.join(images)}: nothing to install")
        return 0
    # --cache: the Dockerfiles mount a build cache at pip's cache folder, so keep using it
    command = [sys.executable, "-m", "pip", "install", *([] if cache else ["--no-cache-dir"]), *lines]
    constraints = next((c for c in CONSTRAINTS_CANDIDATES if c.is_file()), None)
    if constraints:
        command[4:4] = ["-c", str(constraints)]
    print("+", " ".join(command), flush=True)
    return subprocess.call(command)


def lock(project: dict, out: Path) -> int:
    """Pin the closure of the project (every dependency and every extra) to the versions installed here."""
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = default_environment()
    todo = [Requirement(line) for line in requirement_ranges(project).values()]
    pins: dict[str, str] = {}
    missing: list[str] = []
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        if name in pins or name == "speechops":
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(req.name)
            continue
        pins[name] = f"{dist.metadata['Name']}=={dist.version}"
        for extra_line in dist.requires or []:
            sub = Requirement(extra_line)
            extras = set(req.extras) | {""}
            if sub.marker is None or any(sub.marker.evaluate({**env, "extra": e}) for e in extras):
                todo.append(sub)
    if missing:
        print(f"error: not installed here, so not pinned: {', '.join(sorted(set(missing)))}. Install every extra "
              "first (python -m pip install -e '.[test,aws]'), run the tests, then lock again.", file=sys.stderr)
        return 1
    header = ("# The project's lock: every distribution the project and its extras need, pinned to the versions the\n"
              "# test suite passed with (Python %s, %s). pip constraints: they pin, they install nothing by themselves.\n"
              "# Used by the README's install, .ci/run and every image (containers/deps.py).\n"
              "# Regenerate from a passing environment: python containers/deps.py lock\n"
              % (".".join(map(str, sys.version_info[:2])), env["platform_machine"]))
    out.write_text(header + "\n".join(pins[k] for k in sorted(pins)) + "\n")
    print(f"wrote {len(pins)} pins to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("install", "requirements"):
        p = sub.add_parser(name)
        p.add_argument("images", nargs="+")
        if name == "install":
            p.add_argument("--cache", action="store_true", help="use pip's cache (a build cache mount)")
    p = sub.add_parser("lock")
    p.add_argument("--out", type=Path, default=CONSTRAINTS_CANDIDATES[0])
    args = parser.parse_args(argv)
    project = load_pyproject()
    if args.command == "install":
        return install(args.images, project, args.cache)
    if args.command == "requirements":
        print("\n".join(requirements(args.images, project)))
        return 0
    return lock(project, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
