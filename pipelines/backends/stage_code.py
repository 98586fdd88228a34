"""The code a stage really runs, found by reading its imports: the code part of its cache key.

A stage runs ``python -m steps.<step> --task T``. Its code is the repository's Python modules that
``steps/<step>.py`` imports, directly or through other repository modules. Imports are read with
``ast`` from every ``import`` and ``from ... import`` anywhere in a module (inside functions too);
``[..., "-m", "serving", ...]`` counts as an import of ``serving`` (a stage that starts
``python -m serving`` runs its code). Only modules under ``steps/``, ``serving/`` and ``pipelines/``
count; data files (YAML, JSON, audio) are not code.

A task's modules are imported by name at run time (``Task._module("train")`` in
``steps/tasks/base.py``), which no import statement shows. When a stage's code can look a task up
(it reaches ``steps.tasks``), it depends on the task package's ``__init__`` and on the modules that
the ``Task`` methods it calls load: every ``.name`` attribute in the stage's code that is a method of
``Task`` counts as a call (an over-approximation: it can only re-run a stage too often, never reuse
a stale one). If ``base.py`` loads modules in a way this cannot read, the whole task package counts.

So changing a model family re-runs only the stages whose task modules import it, and changing
promotion code retrains nothing: the train stage never imports it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from pipelines.workspace import REPO_ROOT

CODE_PACKAGES = ("steps", "serving", "pipelines")
TASK_BASE = "steps.tasks.base"  # where Task loads its modules by name


@lru_cache(maxsize=4096)
def module_file(name: str, root: Path = REPO_ROOT) -> Path | None:
    """The file of repository module ``name`` (``a/b/__init__.py`` or ``a/b.py``), or None (remembered for
    the process: modules are not created while a pipeline is being planned)."""
    parts = name.split(".")
    if parts[0] not in CODE_PACKAGES or not all(p.isidentifier() for p in parts):
        return None
    base = root.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def module_name(file: Path, root: Path = REPO_ROOT) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# (module name, sha256 of its source) -> what ``_scan`` found; kept on disk between runs (``index``)
_SCANS: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
_LOADED: set[Path] = set()


def _scan(source: bytes, name: str, is_package: bool) -> tuple[frozenset[str], frozenset[str]]:
    """(every module name a source may import, every attribute name it uses); non-modules are dropped later."""
    tree = ast.parse(source)
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    attributes: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            if base:
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Attribute):
            attributes.add(node.attr)
        elif isinstance(node, (ast.List, ast.Tuple)):
            items = node.elts
            for flag, target in zip(items, items[1:]):
                if (isinstance(flag, ast.Constant) and flag.value == "-m" and isinstance(target, ast.Constant)
                        and isinstance(target.value, str)):
                    # ["python", "-m", "serving"]: a stage that runs a module (a package runs its __main__)
                    found.update((target.value, f"{target.value}.__main__"))
    return frozenset(found), frozenset(attributes)


def _read(file: Path, root: Path) -> tuple[frozenset[str], frozenset[str]]:
    stat = file.stat()
    return _read_version(file, module_name(file, root), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=None)
def _read_version(file: Path, name: str, mtime_ns: int, size: int) -> tuple[frozenset[str], frozenset[str]]:
    source = file.read_bytes()
    key = f"{name}:{hashlib.sha256(source).hexdigest()}"
    if key not in _SCANS:
        _SCANS[key] = _scan(source, name, file.name == "__init__.py")
    return _SCANS[key]


def _load_index(index: Path) -> None:
    """Scans of earlier processes (parsing ~60 modules costs ~0.1 s; a cached re-run should not pay it)."""
    if index in _LOADED:
        return
    _LOADED.add(index)
    try:
        stored = json.loads(index.read_text())
    except (OSError, ValueError):
        return
    for key, (imports, attributes) in stored.items():
        _SCANS.setdefault(key, (frozenset(imports), frozenset(attributes)))


def _save_index(index: Path) -> None:
    data = {key: [sorted(imports), sorted(attributes)] for key, (imports, attributes) in _SCANS.items()}
    try:
        if index.is_file() and len(json.loads(index.read_text())) >= len(data):
            return
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(f".{index.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, index)
    except (OSError, ValueError):
        pass  # an optimisation only


def _with_parents(name: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(start: list[str], root: Path = REPO_ROOT) -> dict[str, Path]:
    """Module name -> file, for the modules ``start`` names and everything they import (repository only)."""
    files: dict[str, Path] = {}
    pending = [parent for name in start for parent in _with_parents(name)]
    seen = set(pending)
    while pending:
        file = module_file(name := pending.pop(), root)
        if file is None:
            continue
        files[name] = file
        imports, _ = _read(file, root)
        for imported in imports:
            for parent in _with_parents(imported):
                if parent not in seen:
                    seen.add(parent)
                    pending.append(parent)
    return files


def task_methods(base: Path) -> dict[str, frozenset[str]] | None:
    """``Task`` method -> the task modules it loads (``self._module("x")``, also through the other methods
    it calls); None when a module name is not a literal."""
    return _task_methods(base.read_bytes())


@lru_cache(maxsize=8)
def _task_methods(source: bytes) -> dict[str, frozenset[str]] | None:
    tree = ast.parse(source)
    task = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Task"), None)
    if task is None:
        return None
    loads: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for method in task.body:
        if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) or method.name == "_module":
            continue
        loads[method.name], calls[method.name] = set(), set()
        for node in ast.walk(method):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"):
                continue
            if node.func.attr == "_module":
                arg = node.args[0] if node.args else None
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    return None
                loads[method.name].add(arg.value)
            else:
                calls[method.name].add(node.func.attr)
    resolved: dict[str, frozenset[str]] = {}
    for name in loads:
        seen, todo, modules = set(), [name], set()
        while todo:
            current = todo.pop()
            if current in seen or current not in loads:
                continue
            seen.add(current)
            modules |= loads[current]
            todo += calls[current]
        resolved[name] = frozenset(modules)
    return resolved


def code_files(step: str, task: str, root: Path = REPO_ROOT) -> list[Path]:
    """The files of the code stage ``step`` runs for ``task`` (see the module's docstring)."""
    start = [f"steps.{step}"] if step else []
    files = import_closure(start, root)
    package = f"steps.tasks.{task}"
    if not task or "steps.tasks" not in files or module_file(package, root) is None:
        return sorted(set(files.values()))
    base = files.get(TASK_BASE) or module_file(TASK_BASE, root)
    methods = task_methods(base) if base is not None else None
    if methods is None:  # cannot tell which modules: all of them
        folder = root.joinpath(*package.split("."))
        start += [module_name(f, root) for f in sorted(folder.rglob("*.py"))]
        return sorted(set(import_closure(start, root).values()))
    start.append(package)
    while True:
        files = import_closure(start, root)
        used = set().union(*(_read(f, root)[1] for name, f in files.items() if name != TASK_BASE))
        wanted = {f"{package}.{m}" for method in used & set(methods) for m in methods[method]}
        if wanted <= set(start):
            return sorted(set(files.values()))
        start += sorted(wanted - set(start))


_CODE_VERSIONS: dict[tuple[str, str, Path], str] = {}


def code_version(step: str = "", task: str = "", root: Path = REPO_ROOT, index: Path | None = None) -> str:
    """A hash of the code a stage runs (computed once per stage and task in a process). ``index``: a file
    that keeps the modules' scans, by content hash, for the next process."""
    key = (step, task, root)
    if key not in _CODE_VERSIONS:
        if index is not None:
            _load_index(index)
        digest = hashlib.sha256()
        for file in code_files(step, task, root):
            digest.update(str(file.relative_to(root)).encode())
            digest.update(b"\0")
            digest.update(file.read_bytes())
        _CODE_VERSIONS[key] = digest.hexdigest()[:16]
        if index is not None:
            _save_index(index)
    return _CODE_VERSIONS[key]
