"""Post-load hooks: work that runs after new feeds are loaded (none by default; any may be registered).

Identity linking is not a hook: every load links its own identities as the last step of its
job (`ingest.pipeline.link_identities`), so no view sees a loaded feed unlinked for longer
than the load itself, and housekeeping retries a failed linking nightly.

A hook is registered by name with a `"module:function"` target called as
`function(engine, settings)`. Targets are imported when the hook runs, not when it is
registered, so a hook whose module is not installed (yet) is skipped with a log line instead of
breaking ingest. Hooks run in registration order; one failing does not stop the next.

`PostLoadQueue` makes sure loads that finish close together lead to one run, never two runs at
once: a request while the hooks are running marks them due again, and the running thread goes
round once more when it finishes.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from ptl.settings import Settings

log = logging.getLogger("ptl.sources")


@dataclass(frozen=True)
class PostLoadHook:
    name: str
    target: str  # "package.module:function", called as function(engine, settings)


#: None: identity linking runs inside each load, and no cache refresh is needed here (the API's
#: caches live in the API processes and key on the newest feed and linking run, so they rebuild
#: on their next request after a load or a re-link).
DEFAULT_HOOKS: tuple[PostLoadHook, ...] = ()

_hooks: list[PostLoadHook] = list(DEFAULT_HOOKS)


def register_post_load_hook(name: str, target: str) -> None:
    """Add (or replace, by name) a hook."""
    if ":" not in target:
        raise ValueError(f"hook target {target!r} must be 'module:function'")
    _hooks[:] = [h for h in _hooks if h.name != name] + [PostLoadHook(name, target)]


def post_load_hooks() -> tuple[PostLoadHook, ...]:
    return tuple(_hooks)


def _resolve(hook: PostLoadHook) -> Callable[[Engine, Settings], Any] | None:
    module_name, _, function_name = hook.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "the module is not there" is a skip; a module that fails inside is a real error.
        if exc.name and module_name.startswith(exc.name):
            log.info("post-load hook skipped: not available", extra={"hook": hook.name, "target": hook.target})
            return None
        raise
    function = getattr(module, function_name, None)
    if not callable(function):
        log.info("post-load hook skipped: not available", extra={"hook": hook.name, "target": hook.target})
        return None
    return function  # type: ignore[no-any-return]


def run_post_load_hooks(engine: Engine, settings: Settings) -> dict[str, str]:
    """Run every hook once; returns hook name → ran | skipped | failed."""
    results: dict[str, str] = {}
    for hook in post_load_hooks():
        started = time.perf_counter()
        try:
            function = _resolve(hook)
            if function is None:
                results[hook.name] = "skipped"
                continue
            function(engine, settings)
        except Exception as exc:  # noqa: BLE001 - a failing hook must not stop the others or ingest
            # Only the type: linking errors may quote identities.
            log.error("post-load hook failed", extra={"hook": hook.name, "error": type(exc).__name__})
            results[hook.name] = "failed"
            continue
        results[hook.name] = "ran"
        log.info("post-load hook ran", extra={"hook": hook.name,
                                              "seconds": round(time.perf_counter() - started, 3)})
    return results


class PostLoadQueue:
    """Coalesces requests to run the hooks: at most one run at a time, and no request lost."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._lock = threading.Lock()
        self._due = False
        self._running = False
        self.runs = 0

    def request(self) -> None:
        """Run the hooks now in this thread, or leave them to the thread already running them."""
        with self._lock:
            self._due = True
            if self._running:
                return
            self._running = True
        try:
            while True:
                with self._lock:
                    if not self._due:
                        self._running = False
                        return
                    self._due = False
                run_post_load_hooks(self.engine, self.settings)
                self.runs += 1
        except BaseException:
            with self._lock:
                self._running = False
            raise
