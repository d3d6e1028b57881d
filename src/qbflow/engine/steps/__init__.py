"""Step types: what each kind of workflow step is, how it validates and how it runs (`base.StepType`).

Registered types: `action` (a connector action), `http.request`, `log` (engine.steps.actions); `set`, `if`,
`switch`, `for_each`, `wait` (engine.steps.flow); `approval` (engine.steps.approval). `step_type(step)` gives a
parsed step's type; the one executor (`engine.executor.Execution`) runs them all, for runs and for tests.
"""

from __future__ import annotations

from qbflow.engine.steps import actions, approval, flow  # noqa: F401  (registers the types)
from qbflow.engine.steps.base import StepType, register, step_type, step_types
from qbflow.engine.steps.generic import HttpStepError, http_request, log_message, parse_generic

__all__ = ["HttpStepError", "StepType", "http_request", "log_message", "parse_generic", "register", "step_type",
           "step_types"]
