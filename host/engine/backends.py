"""Which engine generates: this machine's, or a back end that a plugin registers, with a fallback to local.

Config (the `[engine]` table):
    backend = "local"              # or a registered back end: "remote", "openai", "a1111" (plugin "remote")
    fallback_to_local = false      # when the back end cannot be reached, let this machine's engine take the job
    [engine.backends.remote]       # settings handed to the back end's factory, one table per back end
    url = "https://gpu-box:8765"
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from dreamtray.engine.client import EngineError, EngineUnavailable

if TYPE_CHECKING:
    from dreamtray.engine.client import Engine, EngineFactory, Job
    from dreamtray.request import Request, Result

LOCAL = "local"
FINAL = ("done", "failed", "cancelled")
log = logging.getLogger("dreamtray.engine.backends")
Warn = Callable[[str], None]


class Registrations(Protocol):
    """Where back ends come from: the plugin host's `collect("register_engines")`, as (plugin, item) pairs."""

    def collect(self, hook: str, check: Callable[[Any], str | None] | None = None) -> list[tuple[str, Any]]: ...


def engine_factories(plugin_host: Registrations) -> dict[str, EngineFactory]:
    """The back ends that plugins register, by name (a registration of the wrong shape is reported, left out)."""
    registered = plugin_host.collect("register_engines", _not_an_engine)
    return {name: factory for _plugin, (name, factory) in registered}


def _not_an_engine(item: Any) -> str | None:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and callable(item[1]):
        return None
    return "not a name and an engine factory: call register(name, factory)"


def engine_names(plugin_host: Registrations) -> list[str]:
    """The back ends a user can choose (the tray's engine menu, `engine.backend`): local first."""
    return [LOCAL, *sorted(engine_factories(plugin_host))]


def open_engine(
    settings: dict[str, Any], plugin_host: Registrations, local_factory: Callable[[], Engine], warn: Warn = log.warning
) -> Engine:
    """The engine named by `settings["backend"]` (the `[engine]` table), wrapped to fall back when configured.

    `warn` tells the user (a notification, the CLI's stderr) when the back end cannot be reached.
    """
    backend = settings.get("backend", LOCAL)
    if backend == LOCAL:
        return local_factory()
    factories = engine_factories(plugin_host)
    if backend not in factories:
        known = ", ".join([LOCAL, *sorted(factories)])
        raise EngineError(f"engine.backend: no engine named {backend!r}; the installed ones are: {known}.")
    fallback = bool(settings.get("fallback_to_local", False))
    try:
        engine = factories[backend](dict(settings.get("backends", {}).get(backend, {})))
    except EngineError as exc:
        if not fallback:
            raise
        warn(f"The {backend} engine cannot be used: {exc} This machine's engine takes the jobs.")
        return local_factory()
    return FallbackEngine(engine, local_factory if fallback else None, warn)


class FallbackEngine:
    """A back end that hands its jobs to this machine's engine when it cannot be reached (if allowed)."""

    def __init__(self, engine: Engine, local_factory: Callable[[], Engine] | None, warn: Warn = log.warning):
        self.engine, self.local_factory, self.warn = engine, local_factory, warn
        self.name = engine.name
        self.charges_per_image = bool(getattr(engine, "charges_per_image", False))
        self._local: Engine | None = None

    def local(self) -> Engine:
        if self._local is None:
            assert self.local_factory is not None
            self._local = self.local_factory()
        return self._local

    def take_over(self, exc: EngineUnavailable) -> str:
        """The message for the user when the back end is unreachable; raises when no fallback is allowed."""
        if self.local_factory is None:
            raise EngineUnavailable(
                f"{exc} To let this machine's engine take over when that happens, set engine.fallback_to_local = true."
            ) from None
        message = f"{exc} This machine's engine takes the job."
        self.warn(message)
        return message

    def submit(self, request: Request) -> Job:
        try:
            return FallbackJob(self, request, self.engine.submit(request))
        except EngineUnavailable as exc:
            message = self.take_over(exc)
            return FallbackJob(self, request, self.local().submit(request), message)

    def health(self) -> dict[str, Any]:
        try:
            return self.engine.health()
        except EngineUnavailable as exc:
            message = self.take_over(exc)
            return {**self.local().health(), "warning": message}

    def models(self) -> list[dict[str, Any]]:
        return self.engine.models()

    def unload(self) -> None:
        self.engine.unload()
        if self._local is not None:
            self._local.unload()

    def close(self) -> None:
        self.engine.close()
        if self._local is not None:
            self._local.close()


class FallbackJob:
    """A job that moves to the local engine if the back end turns out unreachable while it runs."""

    def __init__(self, owner: FallbackEngine, request: Request, job: Job, warning: str | None = None):
        self.owner, self.request, self.job, self.warning = owner, request, job, warning
        self.id = job.id

    def events(self) -> Iterator[dict[str, Any]]:
        if self.warning:
            yield {"kind": "warning", "message": self.warning}
        while True:
            try:
                for event in self.job.events():
                    if event.get("kind") not in FINAL:
                        yield event
                        continue
                    if event["kind"] == "failed" and self._unreachable():
                        break  # switched to the local engine: follow its job
                    yield event
                    return
                else:
                    return
            except EngineUnavailable as exc:
                if self.warning is not None:
                    raise
                self._switch(exc)
            yield {"kind": "warning", "message": self.warning}

    def _unreachable(self) -> bool:
        """After a failed event: whether it failed for want of the back end (then the job moves)."""
        if self.warning is not None:
            return False
        try:
            self.job.result()
        except EngineUnavailable as exc:
            self._switch(exc)
            return True
        except EngineError:
            return False
        return False

    def _switch(self, exc: EngineUnavailable) -> None:
        self.warning = self.owner.take_over(exc)
        self.job = self.owner.local().submit(self.request)
        self.id = self.job.id

    def result(self) -> Result:
        for _ in self.events():
            pass
        result = self.job.result()
        if self.warning:
            return result.model_copy(update={"warnings": [self.warning, *result.warnings]})
        return result

    def cancel(self) -> None:
        self.job.cancel()
