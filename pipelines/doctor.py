"""Is the installed Python environment the one this project was tested with, and does it work?

``python pipelines/run.py doctor`` prints the check; ``run`` calls :func:`require_working_environment`
before its first stage, so a broken install fails within seconds with one sentence instead of minutes
later with a traceback from deep inside transformers.

Three checks, cheapest first:

1. **Known-broken combinations**, from package metadata only (milliseconds): torch and torchaudio
   must be the same release (torchaudio 2.11.1 does not load with torch 2.11.0).
2. **The lock** (``constraints.txt``): the installed version of every distribution it pins, against
   the pin. A different version is a warning, not an error: a user may install without the lock on
   purpose (the README says how); it names the command that restores the tested set.
3. **Imports of the heavy dependencies** (torch, torchaudio, transformers' audio feature extractor,
   onnxruntime, mlflow) in a child process, so a crashing native library cannot take this one down.
   A failure is an error naming the package, its version, the lock's version and the fix. Its success
   is remembered per installed set (a fingerprint of their versions and install folders), so a run
   pays the few seconds of imports once per environment, not every time.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# the repository's lock; in an image it lies beside the source folder (/opt/speechops/constraints.txt)
LOCK_CANDIDATES = (REPO_ROOT / "constraints.txt", REPO_ROOT.parent / "constraints.txt")
INSTALL_COMMAND = 'python -m pip install -c constraints.txt -e ".[test]"'

# what to import, and which distribution a failure points at (in import order: torch first, since a
# broken torch breaks everything after it)
IMPORT_CHECKS: tuple[tuple[str, str], ...] = (
    ("torch", "import torch"),
    ("torchaudio", "import torchaudio"),
    ("transformers", "from transformers import WhisperFeatureExtractor, Wav2Vec2FeatureExtractor"),
    ("onnxruntime", "import onnxruntime"),
    ("mlflow", "import mlflow.pyfunc"),
)
# distributions that must be the same exact release
SAME_RELEASE = (("torch", "torchaudio"),)
IMPORT_TIMEOUT_S = 300


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_path() -> Path | None:
    return next((p for p in LOCK_CANDIDATES if p.is_file()), None)


def read_lock(path: Path | None = None) -> dict[str, str]:
    """Canonical name -> pinned version, from a pip constraints file."""
    path = path or lock_path()
    if path is None:
        return {}
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class Finding:
    level: str  # error | warning
    package: str
    message: str


@dataclass
class Report:
    versions: dict[str, str | None] = field(default_factory=dict)  # heavy packages: installed version
    locked: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    import_seconds: float | None = None
    import_check: str = "not run"  # passed | failed | remembered | not run

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


def _fix(package: str, locked: dict[str, str]) -> str:
    want = locked.get(canonical(package))
    single = f"python -m pip install '{package}=={want}'" if want else None
    return f"run {INSTALL_COMMAND} from the repository root" + (f" (or just {single})" if single else "")


def _fingerprint(packages: list[str]) -> str:
    """Installed versions and install folders of the checked packages, and this interpreter."""
    parts = [sys.executable, sys.version]
    for name in packages:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            parts.append(f"{name}:missing")
            continue
        location = str(getattr(dist, "_path", ""))
        try:
            mtime = Path(location).stat().st_mtime_ns if location else 0
        except OSError:
            mtime = 0
        parts.append(f"{name}:{dist.version}:{location}:{mtime}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _import_probe() -> tuple[str | None, str]:
    """Import the heavy packages in a child process: (the first package that failed, its error)."""
    script = (
        "import sys\n"
        f"checks = {list(IMPORT_CHECKS)!r}\n"
        "for package, statement in checks:\n"
        "    try:\n"
        "        exec(statement)\n"
        "    except BaseException as exc:\n"
        "        print(package); print(type(exc).__name__ + ': ' + str(exc).splitlines()[0] if str(exc) else type(exc).__name__)\n"
        "        sys.exit(3)\n"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "torch", f"importing the heavy packages took over {IMPORT_TIMEOUT_S} s"
    if proc.returncode == 0:
        return None, ""
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 3 and len(lines) >= 2:
        return lines[-2], lines[-1]
    # a native crash (segfault, abort) ends the child without our message
    tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return "torch", f"the import check crashed: {tail}"


def check(*, imports: bool = True, memo_dir: Path | None = None, compare_lock: bool = True) -> Report:
    """Run the checks; ``memo_dir`` remembers a passed import check for this installed set.
    ``compare_lock=False`` skips the warnings about every other installed package (about 0.1 s)."""
    import time

    report = Report(locked=read_lock())
    heavy = [name for name, _ in IMPORT_CHECKS]
    report.versions = {name: installed_version(name) for name in heavy}
    for name, version in report.versions.items():
        if version is None:
            report.findings.append(Finding("error", name, f"{name} is not installed; {_fix(name, report.locked)}"))
    for first, second in SAME_RELEASE:
        a, b = installed_version(first), installed_version(second)
        if a and b and a.split("+")[0] != b.split("+")[0]:
            want = report.locked.get(second, a)
            report.findings.append(Finding(
                "error", second,
                f"{second} {b} does not match {first} {a}: they must be the same release (the lock wants "
                f"{second} {want}); {_fix(second, report.locked)}"))
    for name, want in sorted(report.locked.items()) if compare_lock else ():
        have = installed_version(name)
        if have is not None and have.split("+")[0] != want and not any(f.package == name for f in report.errors):
            report.findings.append(Finding("warning", name, f"{name} {have} is installed; the lock has {want}"))
    if not imports or report.errors:
        return report
    fingerprint = _fingerprint(heavy)
    memo = memo_dir / f"environment-{fingerprint}.ok" if memo_dir else None
    if memo is not None and memo.is_file():
        report.import_check = "remembered"
        return report
    started = time.monotonic()
    failed, error = _import_probe()
    report.import_seconds = time.monotonic() - started
    if failed:
        report.import_check = "failed"
        have = installed_version(failed) or "not installed"
        want = report.locked.get(canonical(failed), "?")
        report.findings.append(Finding(
            "error", failed,
            f"{failed} {have} does not import ({error}); the lock wants {failed} {want}: {_fix(failed, report.locked)}"))
        return report
    report.import_check = "passed"
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"versions": report.versions, "python": sys.executable}))
    return report


class EnvironmentBroken(RuntimeError):
    """The installed packages cannot run a stage; the message is one sentence with the fix."""


def require_working_environment(memo_dir: Path | None) -> Report:
    """What ``run`` calls before its first stage: raise with the first error, else return the report."""
    report = check(imports=True, memo_dir=memo_dir, compare_lock=False)  # only errors stop a run
    if report.errors:
        raise EnvironmentBroken(report.errors[0].message)
    return report


def main() -> int:
    """``run.py doctor``: print the versions against the lock and every problem with its fix."""
    from rich.markup import escape

    from pipelines.summary import console

    report = check(imports=True, memo_dir=None)
    lock = lock_path()
    console.print(f"python {sys.version.split()[0]} at {sys.executable}")
    console.print(f"lock: {lock or 'not found (constraints.txt is missing: versions cannot be compared)'}")
    for name, version in report.versions.items():
        want = report.locked.get(canonical(name), "-")
        same = version is not None and version.split("+")[0] == want
        mark = "[green]ok[/]" if same else "[yellow]differs[/]" if version else "[red]missing[/]"
        console.print(f"  {name:<14} installed {version or '-':<16} lock {want:<12} {mark}")
    seconds = f" in {report.import_seconds:.1f} s" if report.import_seconds is not None else ""
    console.print(f"import check: {report.import_check}{seconds}")
    others = [w for w in report.warnings if w.package not in report.versions]
    if others:
        console.print(f"[yellow]{len(others)} other installed package(s) differ from the lock[/] "
                      f"(fine if you installed without it on purpose; {INSTALL_COMMAND} restores the tested set):")
        for finding in others[:20]:
            console.print(f"  {finding.message}", markup=False)
        if len(others) > 20:
            console.print(f"  ... and {len(others) - 20} more")
    for finding in report.errors:
        console.print(f"[bold red]error:[/] {escape(finding.message)}", markup=True, highlight=False)
    if report.errors:
        return 1
    console.print("[green]the environment works[/]")
    return 0
