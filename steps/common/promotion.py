"""The promotion gate and the manual overrides, on MLflow model-registry aliases.

One mechanism for the register stage (the automatic gate) and ``pipelines/run.py promote|rollback``
(a person's override):

* every new version gets the ``challenger`` alias (it always names the newest registered version);
* ``champion`` (what serving loads, ``models:/<name>@champion``) moves to a new version only if it
  beats the current champion *on the same evaluation set*, by the thresholds of the pipeline's
  one ``Gate`` (``steps/common/gate.py``: each metric with its direction, lower or higher is better);
  the first version becomes champion when it passes the absolute limits;
* every decision is written on the version as ``speechops.gate.*`` tags (metrics compared,
  thresholds, decision, reason); a version that becomes champion records the one it replaced in
  ``speechops.previous_champion``, which is what ``rollback`` without ``--version`` returns to;
* the read-decide-move sequence runs under a lock, so two concurrent registrations leave exactly one
  champion and consistent tags: a file lock beside a local SQLite store, and for any other store
  (``mlflow server``, SageMaker's managed MLflow) an atomic "create registered model" used as a
  mutex (see ``RegistryMutex`` for its limits).

MLflow replaced stages with aliases in 2.9; nothing here uses stages.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from steps.common.gate import Gate

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

TAG_PREFIX = "speechops."
TAG_CORPUS = "speechops.corpus_sha256"
TAG_EVAL_SET = "speechops.eval_set_sha256"
TAG_EVAL_METRIC = "speechops.eval."  # + metric name: full-precision gate metrics of the version
TAG_PREVIOUS_CHAMPION = "speechops.previous_champion"
TAG_GATE = "speechops.gate."  # + decision, reason, compared, thresholds, violations, champion_before, at
TAG_MANUAL = "speechops.manual."  # + action, reason, by, at, from_version
TAG_ROLLED_BACK = "speechops.rolled_back."  # + reason, by, at, to_version
MAX_TAG_CHARS = 4000
LOCK_TTL_S = 600.0


class PromotionError(RuntimeError):
    """A promotion or rollback that cannot be done; the message says what to do instead."""


class PromotionLockTimeout(PromotionError):
    """Another registration or override held the registry lock for longer than we waited."""


# -- the gate: a pure decision over the pipeline's one Gate (steps/common/gate.py) ------------

@dataclass(frozen=True)
class Evaluated:
    """What the gate knows about one registered version: its gate metrics and its evaluation set."""

    version: str
    metrics: Mapping[str, float]
    eval_set: str | None  # fingerprint of the evaluated split (see ``evaluation_set_fingerprint``)


@dataclass
class GateDecision:
    promote: bool
    reason: str
    violations: list[str]
    compared: dict[str, dict[str, float | None]]
    thresholds: dict[str, dict[str, Any]]
    champion_before: str | None
    like_for_like: bool | None  # None: there was no champion to compare with
    at: str = field(default_factory=lambda: _now())

    @property
    def outcome(self) -> str:
        return "promoted" if self.promote else "kept_challenger"

    def tags(self) -> dict[str, str]:
        return {
            f"{TAG_GATE}decision": self.outcome,
            f"{TAG_GATE}reason": self.reason[:MAX_TAG_CHARS],
            f"{TAG_GATE}violations": _json_tag(self.violations),
            f"{TAG_GATE}compared": _json_tag(self.compared),
            f"{TAG_GATE}thresholds": _json_tag(self.thresholds),
            f"{TAG_GATE}champion_before": self.champion_before or "none",
            f"{TAG_GATE}like_for_like": {None: "n/a", True: "true", False: "false"}[self.like_for_like],
            f"{TAG_GATE}at": self.at,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome}


def decide(candidate: Evaluated, champion: Evaluated | None, gate: Gate) -> GateDecision:
    """Collect every violation of ``gate``, then decide once; each metric in its own direction.

    With no champion, the candidate is promoted when it meets every absolute limit. With one, it is
    promoted only when both were evaluated on the same set, it meets every limit and improvement or
    regression threshold, and it is strictly better on at least one gate metric.
    """
    violations: list[str] = []
    compared: dict[str, dict[str, float | None]] = {}
    for rule in gate.metrics:
        value = candidate.metrics.get(rule.name)
        if (value is None or not math.isfinite(value)) and rule.has_thresholds:
            violations.append(f"{rule.name} is missing from this version's evaluation")
            continue
        if value is None or not math.isfinite(value):
            continue  # a metric with every threshold switched off decides nothing
        if not rule.meets_limit(value):
            violations.append(f"{rule.name} {value:.4g} does not meet the limit {rule.name} {rule.op} {rule.limit:g} "
                              f"(gate.{rule.name}.limit)" + (f": {rule.about}" if rule.about else ""))
    table = gate.thresholds()
    if champion is None:
        for rule in gate.metrics:
            compared[rule.name] = {"new": candidate.metrics.get(rule.name), "champion": None, "delta": None}
        if violations:
            return GateDecision(False, "first version, not promoted: " + "; ".join(violations), violations,
                                compared, table, None, None)
        limits = ", ".join(f"{r.name} {candidate.metrics[r.name]:.4g} {r.op} {r.limit:g}"
                           for r in gate.metrics if r.limit is not None) or "no absolute limits set"
        return GateDecision(True, f"first version, promoted: passes the absolute limits ({limits})", [],
                            compared, table, None, None)

    like_for_like = bool(candidate.eval_set) and candidate.eval_set == champion.eval_set
    if not like_for_like:
        violations.append(
            f"not like-for-like: champion v{champion.version} was evaluated on set "
            f"{_short(champion.eval_set)}, this version on {_short(candidate.eval_set)} (a different test split, "
            f"size or data); metrics are not comparable, so the champion stays. Promote by hand if intended: "
            f"python pipelines/run.py promote --pipeline NAME --version {candidate.version} --reason '...'")
    improved: list[str] = []
    for rule in gate.metrics:
        new, old = candidate.metrics.get(rule.name), champion.metrics.get(rule.name)
        delta = None if new is None or old is None else new - old
        compared[rule.name] = {"new": new, "champion": old, "delta": delta}
        if new is None or not math.isfinite(new):
            continue  # already reported above
        if (old is None or not math.isfinite(old)) and (rule.min_improvement is not None
                                                        or rule.max_regression is not None):
            violations.append(f"champion v{champion.version} has no recorded {rule.name} to compare with")
            continue
        if old is None or not math.isfinite(old):
            continue  # only an absolute limit on this metric: nothing to compare
        if not like_for_like:
            continue
        gain = rule.gain(new, old)
        better = "lower" if rule.lower_is_better else "higher"
        if gain > 0:
            improved.append(rule.name)
        if rule.min_improvement is not None and gain < rule.min_improvement:
            violations.append(f"{rule.name} {new:.4g} vs champion {old:.4g} ({delta:+.4g}): needs to be at least "
                              f"{rule.min_improvement:g} {better} (gate.{rule.name}.min_improvement)")
        if rule.max_regression is not None and -gain > rule.max_regression:
            violations.append(f"{rule.name} {new:.4g} vs champion {old:.4g} ({delta:+.4g}): more than the allowed "
                              f"{rule.max_regression:g} worse (gate.{rule.name}.max_regression)")
    if like_for_like and not improved and all(r.min_improvement is None for r in gate.metrics):
        violations.append(f"no gate metric is better than champion v{champion.version}'s "
                          f"({', '.join(gate.names)})")
    if violations:
        return GateDecision(False, f"stays challenger; champion stays v{champion.version}: " + "; ".join(violations),
                            violations, compared, table, champion.version, like_for_like)
    summary = "; ".join(f"{m} {c['new']:.4g} vs {c['champion']:.4g} ({c['delta']:+.4g})"
                        for m, c in compared.items() if c["delta"] is not None)
    return GateDecision(True, f"promoted over champion v{champion.version} on the same evaluation set: {summary}",
                        [], compared, table, champion.version, True)


def evaluation_set_fingerprint(split: str | None, utterances: int | None, manifest_sha256: str | None,
                               basis: str) -> str | None:
    """One hash for "what was evaluated": split name, size, and the content hash of its manifest.

    ``basis`` says what ``manifest_sha256`` hashes: ``split`` (the evaluated split's manifest) or
    ``corpus`` (all splits, when the stage could not see the split itself). Different bases never
    match, which errs on the side of not promoting.
    """
    if not manifest_sha256 or manifest_sha256 == "unknown":
        return None
    payload = json.dumps({"split": split, "utterances": utterances, "manifest_sha256": manifest_sha256,
                          "basis": basis}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def metric_tags(metrics: Mapping[str, float]) -> dict[str, str]:
    return {f"{TAG_EVAL_METRIC}{k}": repr(float(v)) for k, v in metrics.items()}


def evaluated_from_tags(version: str, tags: Mapping[str, str], metrics: Sequence[str]) -> Evaluated:
    """Read a version's gate metrics (full precision, or the rounded ``metric.*`` tags of older versions)."""
    values: dict[str, float] = {}
    for metric in metrics:
        raw = tags.get(f"{TAG_EVAL_METRIC}{metric}", tags.get(f"metric.{metric}"))
        try:
            values[metric] = float(raw) if raw is not None else math.nan
        except ValueError:
            values[metric] = math.nan
    return Evaluated(version, {k: v for k, v in values.items() if math.isfinite(v)}, tags.get(TAG_EVAL_SET))


# -- locks ------------------------------------------------------------------------------------------

def local_store_path(tracking_uri: str) -> Path | None:
    """The file or folder of a local store (``sqlite:///...``, ``file:...`` or a plain path), else None."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///"))
    if tracking_uri.startswith("file:"):
        return Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
    if tracking_uri.startswith(("/", "./", "../", "~")):
        return Path(tracking_uri).expanduser()
    return None


@contextlib.contextmanager
def registry_lock(client: Any, tracking_uri: str, name: str, timeout_s: float = 300.0) -> Iterator[None]:
    """Hold the promotion lock of ``name``: a file lock for a local store, a ``RegistryMutex`` otherwise."""
    store = local_store_path(tracking_uri)
    if store is not None:
        from filelock import FileLock, Timeout

        sqlite = tracking_uri.startswith("sqlite:")
        path = store.with_name(store.name + ".promotion.lock") if sqlite or store.is_file() else store / ".promotion.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=timeout_s)
        try:
            with lock:
                yield
        except Timeout as exc:
            raise PromotionLockTimeout(
                f"another registration or override of {name!r} held {path} for over {timeout_s:.0f}s; "
                f"retry when it is done (or raise register.lock_timeout_s)") from exc
        return
    with RegistryMutex(client, name, timeout_s=timeout_s):
        yield


class RegistryMutex:
    """A lock for stores without a shared file system: creating a registered model is atomic.

    MLflow's model registry has no compare-and-set on aliases or tags, but ``create_registered_model``
    fails with RESOURCE_ALREADY_EXISTS when the name exists (a unique key in the server's database).
    The holder creates ``<name>.speechops-promotion-lock`` with its owner and expiry as tags and deletes
    it when done. Limits: a holder that dies leaves the lock until it expires (``ttl_s``, 10 minutes);
    a waiter then deletes it after re-reading that the same owner still holds it, which leaves a
    narrow window where two waiters breaking the same stale lock could both proceed; and the lock
    shows up in the UI's model list while held (seconds).
    """

    SUFFIX = ".speechops-promotion-lock"

    def __init__(self, client: Any, name: str, timeout_s: float = 300.0, ttl_s: float = LOCK_TTL_S,
                 poll_s: float = 0.2):
        self.client = client
        self.lock_name = f"{name}{self.SUFFIX}"
        self.timeout_s, self.ttl_s, self.poll_s = timeout_s, ttl_s, poll_s
        self.owner = f"{_user()}@{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> RegistryMutex:
        from mlflow.exceptions import MlflowException

        deadline = time.time() + self.timeout_s
        while True:
            try:
                self.client.create_registered_model(
                    self.lock_name, description="speechops promotion lock (deleted when released)",
                    tags={"speechops.lock.owner": self.owner, "speechops.lock.expires": f"{time.time() + self.ttl_s:.3f}"})
                return self
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            holder = self._holder()
            if holder and holder.get("speechops.lock.owner") == self.owner:
                return self  # our own create went through, and a client retry of it was refused
            if holder and float(holder.get("speechops.lock.expires", "0")) < time.time():
                log.warning("breaking the expired promotion lock held by %s", holder.get("speechops.lock.owner"))
                self._delete_if_owner(holder.get("speechops.lock.owner"))
                continue
            if time.time() > deadline:
                owner = (holder or {}).get("speechops.lock.owner", "unknown")
                raise PromotionLockTimeout(
                    f"the registry lock {self.lock_name!r} is held by {owner}; waited {self.timeout_s:.0f}s. "
                    f"Retry when it is done; a dead holder's lock expires after {self.ttl_s:.0f}s")
            time.sleep(self.poll_s)

    def __exit__(self, *exc: object) -> None:
        self._delete_if_owner(self.owner)

    def _holder(self) -> dict[str, str] | None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.lock_name).tags)
        except MlflowException:
            return None

    def _delete_if_owner(self, owner: str | None) -> None:
        from mlflow.exceptions import MlflowException

        holder = self._holder()
        if holder is None or holder.get("speechops.lock.owner") != owner:
            return
        try:
            self.client.delete_registered_model(self.lock_name)
        except MlflowException as exc:  # deleted by someone breaking it meanwhile
            log.debug("lock %s already gone: %s", self.lock_name, exc)


# -- the registry operations --------------------------------------------------------------------------

class ModelRegistry:
    """Alias moves and their records for one registered model, each under ``registry_lock``."""

    def __init__(self, tracking_uri: str, name: str, lock_timeout_s: float = 300.0):
        from mlflow import MlflowClient

        self.tracking_uri, self.name, self.lock_timeout_s = tracking_uri, name, lock_timeout_s
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return registry_lock(self.client, self.tracking_uri, self.name, self.lock_timeout_s)

    def aliases(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            return {k: str(v) for k, v in self.client.get_registered_model(self.name).aliases.items()}
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise

    def champion(self) -> str | None:
        return self.aliases().get(CHAMPION)

    def tags(self, version: str) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_model_version(self.name, str(version)).tags)
        except MlflowException as exc:
            raise PromotionError(f"model {self.name!r} has no version {version} at {self.tracking_uri}; "
                                 f"list them with: mlflow ui (Models tab) or serve --pipeline {self.name}") from exc

    def set_tags(self, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, str(version), key, str(value))

    def gate(self, version: str, gate: Gate) -> GateDecision:
        """Give ``version`` the challenger alias, decide against the champion, record, move champion if won."""
        version = str(version)
        with self.lock():
            self.client.set_registered_model_alias(self.name, CHALLENGER, version)
            candidate = evaluated_from_tags(version, self.tags(version), gate.names)
            current = self.champion()
            champion = evaluated_from_tags(current, self.tags(current), gate.names) if current else None
            decision = decide(candidate, champion, gate)
            self.set_tags(version, decision.tags())
            if decision.promote:
                self.set_tags(version, {TAG_PREVIOUS_CHAMPION: current or "none"})
                self.client.set_registered_model_alias(self.name, CHAMPION, version)
        log.info("gate for %s v%s: %s", self.name, version, decision.reason)
        return decision

    def promote(self, version: str, reason: str) -> dict[str, Any]:
        """A person's override: make ``version`` champion, recording who, when and why."""
        version = str(version)
        _require_reason(reason)
        with self.lock():
            self.tags(version)  # exists?
            current = self.champion()
            if current == version:
                return {"action": "promote", "version": version, "previous": current, "changed": False,
                        "message": f"{self.name} v{version} is already the champion; nothing changed"}
            self.set_tags(version, {**self._manual("promote", reason, current), TAG_PREVIOUS_CHAMPION: current or "none"})
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
        return {"action": "promote", "version": version, "previous": current, "changed": True,
                "message": f"{self.name}: champion is now v{version} (was {_v(current)}); reason recorded"}

    def rollback(self, version: str | None, reason: str) -> dict[str, Any]:
        """Move champion back: to ``version``, or to the champion the current one replaced."""
        _require_reason(reason)
        with self.lock():
            current = self.champion()
            if current is None:
                raise PromotionError(f"model {self.name!r} has no champion to roll back from; "
                                     f"use promote --pipeline {self.name} --version N --reason '...'")
            target = str(version) if version is not None else self.tags(current).get(TAG_PREVIOUS_CHAMPION, "none")
            if target in ("", "none"):
                raise PromotionError(f"champion v{current} of {self.name!r} records no previous champion (it was the "
                                     f"first); pass --version N to choose the version to roll back to")
            if target == current:
                raise PromotionError(f"v{target} is already the champion of {self.name!r}; nothing to roll back")
            target_tags = self.tags(target)  # raises with a clear message if it was deleted
            now = _now()
            self.set_tags(current, {f"{TAG_ROLLED_BACK}reason": reason[:MAX_TAG_CHARS], f"{TAG_ROLLED_BACK}by": _user(),
                                    f"{TAG_ROLLED_BACK}at": now, f"{TAG_ROLLED_BACK}to_version": target})
            extra = {} if TAG_PREVIOUS_CHAMPION in target_tags else {TAG_PREVIOUS_CHAMPION: "none"}
            # the target keeps its own previous_champion, so repeated rollbacks walk further back
            self.set_tags(target, {**self._manual("rollback", reason, current), **extra})
            self.client.set_registered_model_alias(self.name, CHAMPION, target)
        return {"action": "rollback", "version": target, "previous": current, "changed": True,
                "message": f"{self.name}: champion rolled back from v{current} to v{target}; reason recorded"}

    @staticmethod
    def _manual(action: str, reason: str, from_version: str | None) -> dict[str, str]:
        return {f"{TAG_MANUAL}action": action, f"{TAG_MANUAL}reason": reason[:MAX_TAG_CHARS],
                f"{TAG_MANUAL}by": _user(), f"{TAG_MANUAL}at": _now(), f"{TAG_MANUAL}from_version": from_version or "none"}


def _require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise PromotionError("a reason is required (--reason '...'): it is recorded on the version")


def _json_tag(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_TAG_CHARS else text[: MAX_TAG_CHARS - 3] + "..."


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "unknown"


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")
