"""A strict stand-in for AWS Step Functions: the Amazon States Language subset the programs use,
validated as Step Functions validates a definition, and run as a standard execution runs it.

moto has Step Functions, but its executions do not run a definition: by default they return a
canned history (`SF_EXECUTION_HISTORY_TYPE`), and its LocalStack-derived parser invokes Lambda
through moto's Lambda backend, which runs functions in Docker. So the tests run the rendered
definition here, against the real handler on moto, with each invocation's time bounded.

Rules, from the Amazon States Language specification (https://states-language.net/spec.html) and
the Step Functions developer guide:
- top level: `States` (an object) and `StartAt`, which must name a state ("Top-level fields");
- every state has a `Type` among those known; Pass, Task and Choice-free states end with exactly
  one of `Next` (naming a state) or `End: true`; Succeed and Fail have neither ("Common state
  fields", "Transitions"); a Choice has `Choices` (non-empty), each rule with `Next`, and an
  optional `Default` naming a state, and no `End` ("Choice State");
- a Choice rule (the subset used): `Variable` a path starting with `$`, exactly one comparison
  operator, `BooleanEquals` a boolean, `Numeric*` a number ("Choice Rules");
- a Task has a `Resource` that is an ARN ("Task State"); `TimeoutSeconds` a positive integer;
- Retry ("Retrying after error"): `ErrorEquals` a non-empty array of strings (`States.ALL` only
  alone and in the last retrier), `IntervalSeconds` a positive integer (default 1), `MaxAttempts`
  a non-negative integer (default 3; 0: never retried), `BackoffRate` a number >= 1.0 (default 2.0);
- a field ending in `.$` holds a path or an intrinsic function ("Parameters", "Intrinsic functions":
  `States.MathAdd` takes two integers);
- every state is reachable from StartAt (Step Functions refuses unreachable states:
  "MISSING_TRANSITION_TARGET" / "UNREACHABLE_STATE" validation errors);
- a standard execution's history holds at most 25,000 events (developer guide, "Service quotas");
  an execution that would write more fails (`States.Runtime`-style: here `HistoryQuotaExceeded`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

STATE_TYPES = frozenset({"Task", "Pass", "Choice", "Succeed", "Fail", "Wait"})
TERMINAL = frozenset({"Succeed", "Fail"})
COMPARISONS = frozenset({"BooleanEquals", "NumericEquals", "NumericGreaterThan", "NumericGreaterThanEquals",
                         "NumericLessThan", "NumericLessThanEquals", "StringEquals"})
HISTORY_QUOTA = 25_000
ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]*:.+$")
PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MATH_ADD = re.compile(r"^States\.MathAdd\((\$[.A-Za-z0-9_]*), *(-?\d+)\)$")


class InvalidDefinition(ValueError):
    """What Step Functions answers CreateStateMachine with (InvalidDefinition)."""


def _fail(where: str, why: str) -> NoReturn:
    raise InvalidDefinition(f"{where}: {why}")


def validate(definition: Mapping[str, Any]) -> None:
    """Refuse a definition Step Functions would refuse (the subset above); silent when valid."""
    states = definition.get("States")
    if not isinstance(states, Mapping) or not states:
        _fail("/", "States must be a non-empty object")
    start = definition.get("StartAt")
    if not isinstance(start, str) or start not in states:
        _fail("/StartAt", f"{start!r} names no state")
    for name, state in states.items():
        where = f"/States/{name}"
        if not isinstance(state, Mapping):
            _fail(where, "a state is an object")
        kind = state.get("Type")
        if kind not in STATE_TYPES:
            _fail(where, f"unknown Type {kind!r}")
        has_next, has_end = "Next" in state, state.get("End") is True
        if "End" in state and state["End"] is not True:
            _fail(where, "End must be true when present")
        if kind in TERMINAL or kind == "Choice":
            if has_next or "End" in state:
                _fail(where, f"a {kind} state has neither Next nor End")
        elif has_next == has_end:
            _fail(where, "a non-terminal state has exactly one of Next or End")
        if has_next and state["Next"] not in states:
            _fail(where, f"Next {state['Next']!r} names no state")
        if kind == "Choice":
            _choice(where, state, states)
        if kind == "Task":
            _task(where, state)
        if kind == "Fail" and not isinstance(state.get("Error", ""), str):
            _fail(where, "Error is a string")
        for key in ("Parameters", "ResultSelector"):
            if key in state:
                _payload(f"{where}/{key}", state[key])
        for key in ("ResultPath", "InputPath", "OutputPath"):
            if key in state and state[key] is not None and not PATH.match(str(state[key])):
                _fail(f"{where}/{key}", f"{state[key]!r} is not a reference path")
    unreachable = set(states) - _reachable(start, states)
    if unreachable:
        _fail("/States", f"unreachable state(s) {sorted(unreachable)}")


def _choice(where: str, state: Mapping[str, Any], states: Mapping[str, Any]) -> None:
    rules = state.get("Choices")
    if not isinstance(rules, list) or not rules:
        raise InvalidDefinition(f"{where}: Choices must be a non-empty array")
    for i, rule in enumerate(rules):
        at = f"{where}/Choices/{i}"
        if not isinstance(rule, Mapping) or rule.get("Next") not in states:
            _fail(at, f"Next {rule.get('Next') if isinstance(rule, Mapping) else None!r} names no state")
        variable = rule.get("Variable")
        if not isinstance(variable, str) or not PATH.match(variable):
            _fail(at, f"Variable {variable!r} is not a path")
        ops = [k for k in rule if k in COMPARISONS]
        extra = set(rule) - COMPARISONS - {"Variable", "Next"}
        if len(ops) != 1 or extra:
            _fail(at, f"exactly one comparison operator, got {ops} (unknown fields {sorted(extra)})")
        value = rule[ops[0]]
        if ops[0] == "BooleanEquals" and not isinstance(value, bool):
            _fail(at, "BooleanEquals takes a boolean")
        if ops[0].startswith("Numeric") and (isinstance(value, bool) or not isinstance(value, (int, float))):
            _fail(at, f"{ops[0]} takes a number")
    if "Default" in state and state["Default"] not in states:
        _fail(where, f"Default {state['Default']!r} names no state")


def _task(where: str, state: Mapping[str, Any]) -> None:
    resource = state.get("Resource")
    if not isinstance(resource, str) or not ARN.match(resource):
        _fail(where, f"Resource {resource!r} is not an ARN")
    timeout = state.get("TimeoutSeconds")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1):
        _fail(where, "TimeoutSeconds is a positive integer")
    retriers = state.get("Retry", [])
    if not isinstance(retriers, list):
        _fail(where, "Retry is an array")
    for i, r in enumerate(retriers):
        at = f"{where}/Retry/{i}"
        errors = r.get("ErrorEquals") if isinstance(r, Mapping) else None
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) and e for e in errors):
            raise InvalidDefinition(f"{at}: ErrorEquals is a non-empty array of error names")
        if "States.ALL" in errors and (len(errors) > 1 or i != len(retriers) - 1):
            _fail(at, "States.ALL appears alone, in the last retrier")
        interval = r.get("IntervalSeconds", 1)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            _fail(at, f"IntervalSeconds is a positive integer, got {interval!r}")
        attempts = r.get("MaxAttempts", 3)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            _fail(at, f"MaxAttempts is a non-negative integer, got {attempts!r}")
        rate = r.get("BackoffRate", 2.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 1.0:
            _fail(at, f"BackoffRate is a number >= 1.0, got {rate!r}")
        unknown = set(r) - {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds",
                            "JitterStrategy"}
        if unknown:
            _fail(at, f"unknown field(s) {sorted(unknown)}")


def _payload(where: str, value: Any) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k.endswith(".$"):
                if not isinstance(v, str) or not (PATH.match(v) or MATH_ADD.match(v)):
                    _fail(f"{where}/{k}", f"{v!r} is neither a path nor a known intrinsic")
            else:
                _payload(f"{where}/{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _payload(f"{where}/{i}", v)


def _reachable(start: str, states: Mapping[str, Any]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        todo.extend(n for n in [state.get("Next"), state.get("Default")] if isinstance(n, str))
        todo.extend(r["Next"] for r in state.get("Choices", []) if isinstance(r, Mapping) and "Next" in r)
    return seen


# -- running a standard execution ------------------------------------------------------------------
class TaskError(Exception):
    """A task failed with a Step Functions error name (e.g. Lambda.ServiceException, or the
    function's own error type)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


@dataclass
class Execution:
    status: str = "RUNNING"  # SUCCEEDED | FAILED | ABORTED
    output: Any = None
    error: str | None = None
    cause: str | None = None
    events: list[str] = field(default_factory=list)
    invocations: int = 0
    slept_s: float = 0.0


def _get(data: Any, path: str) -> Any:
    if path == "$":
        return data
    for part in path[2:].split("."):
        if not isinstance(data, Mapping) or part not in data:
            raise TaskError("States.Runtime", f"path {path} not found")
        data = data[part]
    return data


def _render(template: Any, data: Any) -> Any:
    if isinstance(template, Mapping):
        out: dict[str, Any] = {}
        for k, v in template.items():
            if k.endswith(".$"):
                m = MATH_ADD.match(v)
                if m:
                    base = _get(data, m.group(1))
                    if isinstance(base, bool) or not isinstance(base, int):
                        raise TaskError("States.Runtime", f"States.MathAdd of a non-integer {base!r}")
                    out[k[:-2]] = base + int(m.group(2))
                else:
                    out[k[:-2]] = _get(data, v)
            else:
                out[k] = _render(v, data)
        return out
    if isinstance(template, list):
        return [_render(v, data) for v in template]
    return template


def _set(data: Any, path: str, value: Any) -> Any:
    if path == "$":
        return value
    out = dict(data) if isinstance(data, Mapping) else {}
    parts = path[2:].split(".")
    node = out
    for part in parts[:-1]:
        node[part] = dict(node.get(part) or {})
        node = node[part]
    node[parts[-1]] = value
    return out


def _matches(rule: Mapping[str, Any], data: Any) -> bool:
    try:
        value = _get(data, rule["Variable"])
    except TaskError:
        return False
    for op, want in rule.items():
        if op == "BooleanEquals":
            return isinstance(value, bool) and value is want
        if op.startswith("Numeric"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            return {"NumericEquals": value == want, "NumericGreaterThan": value > want,
                    "NumericGreaterThanEquals": value >= want, "NumericLessThan": value < want,
                    "NumericLessThanEquals": value <= want}[op]
        if op == "StringEquals":
            return value == want
    return False


def run(definition: Mapping[str, Any], execution_input: Any,
        invoke: Callable[[str, Mapping[str, Any], float], Any], *,
        stop_after: Callable[[Execution], bool] | None = None) -> Execution:
    """Run a validated definition as a standard execution. `invoke(resource, parameters,
    timeout_s)` performs a Task (it raises TaskError with the integration's error name; it must
    bound its own run to `timeout_s`, the Task's TimeoutSeconds). `stop_after(execution)` is asked
    after every state: True stops the execution (StopExecution: ABORTED). Retries are counted, not
    slept (the interval is added to `slept_s`)."""
    validate(definition)
    ex = Execution()
    states = definition["States"]

    def event(name: str) -> None:
        ex.events.append(name)
        if len(ex.events) > HISTORY_QUOTA:
            raise _Quota()

    data = execution_input
    name = definition["StartAt"]
    try:
        event("ExecutionStarted")
        while True:
            state = states[name]
            kind = state["Type"]
            event(f"{kind}StateEntered")
            if kind == "Succeed":
                event("ExecutionSucceeded")
                ex.status, ex.output = "SUCCEEDED", data
                return ex
            if kind == "Fail":
                event("ExecutionFailed")
                ex.status, ex.error, ex.cause = "FAILED", state.get("Error"), state.get("Cause")
                return ex
            if kind == "Choice":
                nxt = next((r["Next"] for r in state["Choices"] if _matches(r, data)), state.get("Default"))
                if nxt is None:
                    event("ExecutionFailed")
                    ex.status, ex.error = "FAILED", "States.NoChoiceMatched"
                    return ex
                event("ChoiceStateExited")
            elif kind == "Pass":
                result = _render(state["Parameters"], data) if "Parameters" in state else data
                data = _set(data, state.get("ResultPath", "$"), result)
                event("PassStateExited")
                nxt = state.get("Next")
            elif kind == "Task":
                result = _task_run(state, data, invoke, ex, event)
                if result is None:
                    return ex
                if "ResultSelector" in state:
                    result = _render(state["ResultSelector"], result[0])
                else:
                    result = result[0]
                data = _set(data, state.get("ResultPath", "$"), result)
                event("TaskStateExited")
                nxt = state.get("Next")
            else:
                raise InvalidDefinition(f"{kind} states are not in the stand-in's subset")
            if state.get("End") is True:
                event("ExecutionSucceeded")
                ex.status, ex.output = "SUCCEEDED", data
                return ex
            if stop_after is not None and stop_after(ex):
                event("ExecutionAborted")
                ex.status = "ABORTED"
                return ex
            name = nxt
    except _Quota:
        ex.status, ex.error = "FAILED", "HistoryQuotaExceeded"
        return ex
    except TaskError as exc:  # a path the data does not have (Parameters, ResultSelector): States.Runtime
        ex.events.append("ExecutionFailed")
        ex.status, ex.error, ex.cause = "FAILED", exc.error, exc.cause
        return ex


class _Quota(Exception):
    pass


def _task_run(state: Mapping[str, Any], data: Any, invoke: Callable[[str, Mapping[str, Any], float], Any],
              ex: Execution, event: Callable[[str], None]) -> tuple[Any] | None:
    params = _render(state.get("Parameters", {}), data)
    timeout = float(state.get("TimeoutSeconds", 99_999_999))
    attempts: dict[int, int] = {}
    while True:
        event("TaskScheduled")
        event("TaskStarted")
        ex.invocations += 1
        try:
            result = invoke(state["Resource"], params, timeout)
        except TaskError as exc:
            event("TaskFailed")
            for i, r in enumerate(state.get("Retry", [])):
                if exc.error in r["ErrorEquals"] or r["ErrorEquals"] == ["States.ALL"]:
                    n = attempts.get(i, 0)
                    if n < r.get("MaxAttempts", 3):
                        ex.slept_s += r.get("IntervalSeconds", 1) * r.get("BackoffRate", 2.0) ** n
                        attempts[i] = n + 1
                        break
                    i = -1
                    break
            else:
                i = -1
            if i >= 0:
                continue
            event("ExecutionFailed")
            ex.status, ex.error, ex.cause = "FAILED", exc.error, exc.cause
            return None
        event("TaskSucceeded")
        return (result,)


__all__ = ["HISTORY_QUOTA", "Execution", "InvalidDefinition", "TaskError", "run", "validate"]
