"""Lambda's execution environments ("containers") for the template's functions, in one process.

Lambda runs each request of a function in a container that serves one request at a time; a
request that finds every warm container busy gets a new one (a cold start). A handler's module
state is its container's: Powertools' resolver keeps the event it is handling on the
module-level app, so two requests must never share a module while they run.

:class:`ContainerPool` does the same in process: each container is a copy of the function's
handler module of its own (``template.load_module(function_id, name)``); a request takes the
first free container of its function (the oldest, as Lambda prefers a warm one), or loads a
new one when all are busy, up to ``max_containers`` per function (None: no limit). Past the
limit a request waits for a container to come free; Lambda would throttle it (HTTP 429 from
API Gateway) instead, which the local runtime does not model. The first container of each
function is the handler module's default copy (``template.load_module(function_id)``), so
code that patches that module sees its patch in sequential calls.

:class:`InFlight` counts what runs now and the most that ran at once (since its last reset):
``make dev``'s gateway counts its API requests with one, the tests' ``Api`` its calls, and the
pool one per function.

``make dev`` sizes its pool with ``LOCAL_MAX_CONTAINERS`` (default 16 per function).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from localdev import template


def serialize_metrics_flushes() -> None:
    """Containers here are threads of one process, so they share the layer's modules, and with
    them Powertools' one metrics buffer, which Lambda gives each container alone. A flush checks
    the buffer is not empty and then serializes it: another container's flush in between empties
    it and the first raises "Must contain at least one metric". One lock makes each flush whole."""
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider,
    )

    flush = AmazonCloudWatchEMFProvider.flush_metrics
    if getattr(flush, "serialized", False):
        return
    lock = threading.RLock()

    def serialized(self, *args, **kwargs):
        with lock:
            return flush(self, *args, **kwargs)

    serialized.serialized = True  # type: ignore[attr-defined]
    AmazonCloudWatchEMFProvider.flush_metrics = serialized  # type: ignore[method-assign]


serialize_metrics_flushes()


ENV_MAX_CONTAINERS = "LOCAL_MAX_CONTAINERS"
DEFAULT_MAX_CONTAINERS = 16


def max_containers_from(environ: Mapping[str, str] = os.environ) -> int:
    """``LOCAL_MAX_CONTAINERS`` (default 16): containers per function, at least 1.
    ValueError for anything else."""
    text = environ.get(ENV_MAX_CONTAINERS, "").strip()
    if not text:
        return DEFAULT_MAX_CONTAINERS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV_MAX_CONTAINERS} must be a whole number >= 1, not {text!r}")
    return value


class InFlight:
    """How many things run now (``in_flight``), the most that ran at once since the last reset
    (``max_in_flight``) and how many started (``started``). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = self._high = self._started = 0

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count the body of the `with` as one thing in flight."""
        with self._lock:
            self._now += 1
            self._started += 1
            self._high = max(self._high, self._now)
        try:
            yield
        finally:
            with self._lock:
                self._now -= 1

    def snapshot(self) -> dict[str, int]:
        """``{"in_flight", "max_in_flight", "started"}``."""
        with self._lock:
            return {"in_flight": self._now, "max_in_flight": self._high, "started": self._started}

    def reset(self) -> None:
        """The high-water mark back to what runs now, and ``started`` to 0."""
        with self._lock:
            self._high, self._started = self._now, 0


@dataclass
class _Container:
    name: str | None  # template.load_module's container name (None: the default module)
    loaded: bool = False  # False while its first request loads it
    busy: bool = False


class ContainerPool:
    """Containers per function (see the module docstring). `max_containers`: per function,
    None for no limit. `load`: ``(function_id, name) -> handler`` (template.load_handler)."""

    def __init__(
        self,
        max_containers: int | None = DEFAULT_MAX_CONTAINERS,
        load: Callable[[str, str | None], Callable] = template.load_handler,
    ) -> None:
        if max_containers is not None and max_containers < 1:
            raise ValueError("max_containers must be at least 1")
        self.max_containers = max_containers
        self._load = load
        self._cond = threading.Condition()
        self._containers: dict[str, list[_Container]] = {}
        self._busy: dict[str, InFlight] = {}

    @contextmanager
    def container(self, function_id: str) -> Iterator[Callable]:
        """A free container's handler of `function_id`, kept for this caller for the `with`."""
        with self._cond:
            mine = self._containers.setdefault(function_id, [])
            counter = self._busy.setdefault(function_id, InFlight())
            while True:
                found = next((c for c in mine if not c.busy and c.loaded), None)
                if found is None and (self.max_containers is None or len(mine) < self.max_containers):
                    # A name no other function's container has; the first is the default module.
                    found = _Container(None if not mine else f"pool{len(mine)}")
                    mine.append(found)
                if found is not None:
                    found.busy = True
                    break
                self._cond.wait()
        try:
            try:
                # Looked up on each request (a loaded module is cached), so a patched handler
                # is the one called; the first request of a container loads it, outside the lock.
                handler = self._load(function_id, found.name)
            except BaseException:
                if not found.loaded:
                    with self._cond:
                        mine.remove(found)
                raise
            found.loaded = True
            with counter.track():
                yield handler
        finally:
            with self._cond:
                found.busy = False
                self._cond.notify_all()

    def invoke(self, function_id: str, event: object, context: object) -> object:
        """Run the function's handler on `event` in a container of its own."""
        with self.container(function_id) as handler:
            return handler(event, context)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per function: ``{"containers": loaded, "busy": now, "max_busy": most at once,
        "invocations": started}`` (since the last reset)."""
        with self._cond:
            found = {}
            for function_id, mine in self._containers.items():
                counts = self._busy[function_id].snapshot()
                found[function_id] = {
                    "containers": sum(1 for c in mine if c.loaded),
                    "busy": counts["in_flight"],
                    "max_busy": counts["max_in_flight"],
                    "invocations": counts["started"],
                }
            return found

    def reset_stats(self) -> None:
        """Every function's high-water mark and invocation count start again."""
        with self._cond:
            for counter in self._busy.values():
                counter.reset()
