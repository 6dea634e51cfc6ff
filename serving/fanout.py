"""Calls from the ingress to its searcher groups and encoder: deadline, one retry, fan-out, and
the per-request hop trace.

A *hop* is one sequential stage of the request path that calls a Serve deployment handle (the
calls of a fan-out to G groups run concurrently: one hop of wall time). ``RequestTrace`` records
every call the request path makes — which stage, which target, whether it went through a Serve
``DeploymentHandle`` — so hop counts are measured from the calls made, not declared. The ingress
returns the trace when a request asks for it (header ``X-ODH-Trace: 1``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class TraceCall:
    """One call made while answering a request."""

    stage: str
    target: str
    serve_handle: bool
    seconds: float = 0.0


@dataclass
class RequestTrace:
    """The calls one request made, in order (see the module docstring)."""

    calls: list[TraceCall] = field(default_factory=list)

    def record(self, stage: str, target: Any, seconds: float) -> None:
        self.calls.append(TraceCall(stage, _target_name(target), _is_serve_handle(target), seconds))

    @property
    def hops(self) -> int:
        """Sequential stages that called at least one Serve deployment handle."""
        stages: list[str] = []
        for call in self.calls:
            if call.serve_handle and call.stage not in stages:
                stages.append(call.stage)
        return len(stages)

    def stage_seconds(self) -> dict[str, float]:
        """Longest call per stage (the calls of a stage run concurrently)."""
        out: dict[str, float] = {}
        for call in self.calls:
            out[call.stage] = max(out.get(call.stage, 0.0), call.seconds)
        return out


#: The trace of the request being answered (``None``: not tracing).
current_trace: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar(
    "odh_request_trace", default=None
)


def _is_serve_handle(target: Any) -> bool:
    try:
        from ray.serve.handle import DeploymentHandle
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return isinstance(target, DeploymentHandle)


def _target_name(target: Any) -> str:
    name = getattr(target, "deployment_name", None)
    return str(name) if isinstance(name, str) else type(target).__name__


def _record(stage: str, target: Any, seconds: float) -> None:
    trace = current_trace.get()
    if trace is not None:
        trace.record(stage, target, seconds)


class GroupFailure(Exception):
    """A searcher group timed out or failed (after its retry)."""

    def __init__(self, message: str, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class FanOutResult:
    """Answers by group number, the groups that did not answer, and whether any timed out."""

    answers: dict[int, Any]
    missing: list[int]
    timed_out: bool


async def call_once(target: Any, method: str, args: tuple[Any, ...], timeout_s: float) -> Any:
    """``target.method.remote(*args)`` within ``timeout_s`` (no retry); cancels the call on
    timeout (raising ``TimeoutError``) and when the caller is cancelled (the ingress's request
    deadline), so Serve drops it if it has not started. Recorded in the request trace as stage
    ``method``."""
    start = time.perf_counter()
    response = getattr(target, method).remote(*args)
    try:
        return await asyncio.wait_for(response, timeout=timeout_s)
    except (TimeoutError, asyncio.CancelledError):  # our deadline, or the whole request's
        response.cancel()
        raise
    finally:
        _record(method, target, time.perf_counter() - start)


class FanOut:
    """Concurrent calls to every searcher group, each within ``timeout_s`` (a failed call is
    retried once inside the same deadline); ``metrics`` observes each group's latency."""

    def __init__(self, groups: list[Any], timeout_s: float, metrics: Any) -> None:
        if not groups:
            raise ValueError("groups: the ingress needs at least one searcher group")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.groups = list(groups)
        self.timeout_s = float(timeout_s)
        self.metrics = metrics

    def __len__(self) -> int:
        return len(self.groups)

    async def call(self, g: int, method: str, *args: Any) -> Any:
        """One call to group ``g`` (raises ``GroupFailure``)."""
        start = time.perf_counter()
        deadline = start + self.timeout_s
        attempt = 0
        while True:
            attempt += 1
            try:
                out = await call_once(
                    self.groups[g], method, args, max(deadline - time.perf_counter(), 1e-3)
                )
                self.metrics.group(g, time.perf_counter() - start)
                return out
            except TimeoutError:
                logger.warning("group %d: %s timed out after %.3fs", g, method, self.timeout_s)
                raise GroupFailure(f"group {g} timed out", timed_out=True) from None
            except Exception as exc:  # a dead replica must not fail the request
                logger.warning("searcher group %d: %s failed (try %d): %r", g, method, attempt, exc)
                if attempt >= 2 or time.perf_counter() >= deadline:
                    raise GroupFailure(f"group {g} failed: {exc}", timed_out=False) from exc

    async def all(self, method: str, args_of: Any) -> FanOutResult:
        """``method`` on every group at once; ``args_of(g)`` gives group ``g``'s arguments."""
        outcomes = await asyncio.gather(
            *(self.call(g, method, *args_of(g)) for g in range(len(self.groups))),
            return_exceptions=True,
        )
        answers: dict[int, Any] = {}
        missing: list[int] = []
        timed_out = False
        for g, out in enumerate(outcomes):
            if isinstance(out, GroupFailure):
                missing.append(g)
                timed_out |= out.timed_out
            elif isinstance(out, BaseException):
                raise out
            else:
                answers[g] = out
        return FanOutResult(answers, missing, timed_out)
