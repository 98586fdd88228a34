"""The quality gate, declared once: which metrics decide, in which direction, with which thresholds.

A task declares its gate metrics with a direction (``lower`` or ``higher`` is better) and default
thresholds (``Task.gate``). A profile may change thresholds in its ``gate:`` section. The pipeline
definition carries the resulting ``Gate``; every consumer compiles that one object:

* the register stage's MLflow promotion (``steps.common.promotion.decide``),
* the SageMaker backend's condition steps (``<=`` for lower-is-better, ``>=`` for higher),
* any later backend.

Per metric, three optional thresholds:

* ``limit``: an absolute bound every version must meet to become champion, the first one included
  (an upper bound when lower is better, a lower bound when higher is better);
* ``min_improvement``: the champion moves only if the new version is at least this much better;
* ``max_regression``: the champion moves only if the new version is at most this much worse.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Direction = Literal["lower", "higher"]


class GateError(ValueError):
    """A gate configuration that names an unknown metric or threshold, or an invalid value."""


class GateMetric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    direction: Direction = "lower"
    limit: float | None = Field(None, description="absolute bound every version must meet (max if lower is better, "
                                                  "min if higher)")
    min_improvement: float | None = Field(None, ge=0, description="champion moves only if at least this much better")
    max_regression: float | None = Field(None, ge=0, description="champion moves only if at most this much worse")
    about: str | None = Field(None, description="what the metric means, said when a version fails its limit")

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "lower"

    @property
    def has_thresholds(self) -> bool:
        """False when a profile switched every threshold off (``limit: null`` and no champion rules)."""
        return any(getattr(self, key) is not None for key in THRESHOLD_KEYS)

    @property
    def op(self) -> str:
        """The comparison a value must pass against ``limit``."""
        return "<=" if self.lower_is_better else ">="

    @property
    def limit_word(self) -> str:
        return "max" if self.lower_is_better else "min"

    def gain(self, new: float, old: float) -> float:
        """How much better ``new`` is than ``old`` (negative: worse), in the metric's units."""
        return old - new if self.lower_is_better else new - old

    def meets_limit(self, value: float) -> bool:
        if self.limit is None:
            return True
        return value <= self.limit if self.lower_is_better else value >= self.limit

    def describe(self) -> str:
        parts = [f"{self.name} ({self.direction} is better)"]
        if self.limit is not None:
            parts.append(f"{self.op} {self.limit:g}")
        if self.min_improvement is not None:
            parts.append(f"at least {self.min_improvement:g} better than the champion")
        if self.max_regression is not None:
            parts.append(f"at most {self.max_regression:g} worse than the champion")
        return ", ".join(parts)


THRESHOLD_KEYS = ("limit", "min_improvement", "max_regression")


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: tuple[GateMetric, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def metric(self, name: str) -> GateMetric:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)

    def thresholds(self) -> dict[str, dict[str, Any]]:
        return {m.name: {"direction": m.direction, **{k: getattr(m, k) for k in THRESHOLD_KEYS}} for m in self.metrics}

    def configured(self, section: dict[str, Any] | None, where: str = "gate") -> Gate:
        """This gate with a profile's ``gate:`` section applied: ``{metric: {limit|min_improvement|max_regression}}``.

        Every problem is collected; unknown names suggest the closest valid one. The direction is
        the task's and cannot be changed here.
        """
        if not section:
            return self
        if not isinstance(section, dict):
            raise GateError(f"{where} must be a mapping of gate metric -> thresholds, got {section!r}")
        problems: list[str] = []
        changed: dict[str, GateMetric] = {}
        for name, values in section.items():
            if name not in self.names:
                problems.append(f"{where}.{name}: not a gate metric of this task{_suggest(name, self.names)} "
                                f"(gate metrics: {', '.join(self.names)})")
                continue
            if not isinstance(values, dict):
                problems.append(f"{where}.{name}: expected a mapping of {', '.join(THRESHOLD_KEYS)}, got {values!r}")
                continue
            for key in values:
                if key not in THRESHOLD_KEYS:
                    problems.append(f"{where}.{name}.{key}: unknown threshold{_suggest(key, THRESHOLD_KEYS)} "
                                    f"(thresholds: {', '.join(THRESHOLD_KEYS)}; the direction is the task's)")
            base = self.metric(name).model_dump()
            try:
                changed[name] = GateMetric.model_validate(
                    {**base, **{k: v for k, v in values.items() if k in THRESHOLD_KEYS}})
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(x) for x in err["loc"])
                    problems.append(f"{where}.{name}.{loc}: {err['msg']} (got {err.get('input')!r})")
        if problems:
            raise GateError("\n".join(problems))
        return Gate(metrics=tuple(changed.get(m.name, m) for m in self.metrics))


def _suggest(name: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
