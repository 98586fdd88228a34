"""The container engine on this machine: docker or podman, and the compose tool that goes with it.

One place decides how containers are built and run, for ``containers/build.py`` and the compose
backend. Environment overrides:

* ``SPEECHOPS_CONTAINER_ENGINE``: ``docker`` or ``podman`` (default: docker when ``docker info``
  reaches an engine, else podman);
* ``SPEECHOPS_PODMAN_RUNTIME``: podman's OCI runtime (default ``runc`` when installed: crun fails on
  some hosts' cgroup setups; ``default`` keeps podman's own choice).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


class EngineError(RuntimeError):
    """No usable container engine or compose tool; the message says what to install."""


@dataclass(frozen=True)
class Engine:
    name: str  # docker | podman
    binary: str
    global_args: tuple[str, ...] = ()
    compose: tuple[str, ...] = field(default=())

    def command(self, *args: str) -> list[str]:
        """``podman --runtime runc <args>`` / ``docker <args>``."""
        return [self.binary, *self.global_args, *args]

    def build_flags(self) -> list[str]:
        """Flags every image build needs on this engine."""
        if self.name != "podman":
            return []
        # docker format keeps HEALTHCHECK (OCI images drop it); host network for pip inside builds
        return ["--format", "docker", "--network", "host", *self._ulimits()]

    def run_flags(self) -> list[str]:
        return self._ulimits() if self.name == "podman" else []

    def _ulimits(self) -> list[str]:
        # podman's default limits (and even --ulimit host) can exceed what an unprivileged or nested
        # host lets the runtime set ("error setting rlimit ... operation not permitted"): ask for the
        # caller's own open-file limit and a bounded process count instead.
        nofile, nproc = _limit("NOFILE", 1024), min(_limit("NPROC", 4096), 16384)
        return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]

    def compose_command(self) -> list[str]:
        if not self.compose:
            raise EngineError(
                "no compose tool: install podman-compose (pip install podman-compose) for podman, "
                "or the docker compose plugin for docker")
        if self.name == "podman":
            args = list(self.compose)
            if self.global_args:
                args += ["--podman-args", " ".join(self.global_args)]
            if self.run_flags():
                args += ["--podman-run-args", " ".join(self.run_flags())]
            return args
        return list(self.compose)

    def image_exists(self, image: str) -> bool:
        probe = self.command("image", "inspect", image)
        return subprocess.run(probe, capture_output=True, timeout=60).returncode == 0


def _limit(name: str, fallback: int) -> int:
    try:
        import resource

        soft, _ = resource.getrlimit(getattr(resource, f"RLIMIT_{name}"))
        return soft if 0 < soft < 1 << 30 else fallback
    except (ImportError, AttributeError, ValueError, OSError):
        return fallback


def _docker_engine_running() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _podman_global_args() -> tuple[str, ...]:
    runtime = os.environ.get("SPEECHOPS_PODMAN_RUNTIME")
    if runtime is None:
        runtime = "runc" if shutil.which("runc") else "default"
    return () if runtime == "default" else ("--runtime", runtime)


def detect(prefer: str | None = None) -> Engine:
    """The engine to use: ``prefer`` (or ``$SPEECHOPS_CONTAINER_ENGINE``), else whichever works here."""
    prefer = prefer or os.environ.get("SPEECHOPS_CONTAINER_ENGINE") or "auto"
    if prefer not in ("auto", "docker", "podman"):
        raise EngineError(f"unknown container engine {prefer!r}: use docker, podman or auto")
    if prefer in ("auto", "docker") and _docker_engine_running():
        compose: tuple[str, ...] = ()
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20).returncode == 0:
            compose = ("docker", "compose")
        elif shutil.which("docker-compose"):
            compose = ("docker-compose",)
        return Engine("docker", "docker", (), compose)
    if prefer in ("auto", "podman") and shutil.which("podman"):
        compose = ("podman-compose",) if shutil.which("podman-compose") else ()
        return Engine("podman", "podman", _podman_global_args(), compose)
    if prefer == "docker":
        raise EngineError("docker is not usable here (no docker engine answers `docker info`); "
                          "install podman and podman-compose, or start a docker engine")
    raise EngineError("no container engine: install podman (apt-get install podman) and "
                      "podman-compose (pip install podman-compose), or docker with its compose plugin")
