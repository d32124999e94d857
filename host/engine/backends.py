"""Which engine generates: this machine's, or a back end that a plugin registers, with a fallback to local.

Config (the `[engine]` table):
    backend = "local"              # or a registered back end: "remote", "openai", "a1111" (plugin "remote")
    fallback_to_local = false      # when the back end cannot be reached, let this machine's engine take the job
    [engine.backends.remote]       # settings handed to the back end's factory, one table per back end
    url = "https://gpu-box:8765"

A plugin's engine is held to the Engine protocol (docs/plugins.md): a factory that is a class is checked when it
is registered, the engine it makes when it is opened, each job when it is submitted and each result when it
comes back; every message names the plugin, the back end and the member or field.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from dreamtray.engine.client import EngineError, EngineUnavailable, JobFailed
from dreamtray.engine.job_record import FINISHED

if TYPE_CHECKING:
    from dreamtray.engine.client import Engine, EngineFactory, Job
    from dreamtray.request import Request, Result

LOCAL = "local"
ENGINE_MEMBERS = ("submit", "health", "models", "unload", "close")
"""What every engine has (`name` is optional: the back end's registered name stands in)."""
JOB_MEMBERS = ("id", "events", "result", "cancel")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
log = logging.getLogger("dreamtray.engine.backends")
Warn = Callable[[str], None]
T = TypeVar("T")


class Registrations(Protocol):
    """Where back ends come from: the plugin host's `collect("register_engines")`, as (plugin, item) pairs."""

    def collect(self, hook: str, check: Callable[[Any], str | None] | None = None) -> list[tuple[str, Any]]: ...


def engine_factories(plugin_host: Registrations) -> dict[str, EngineFactory]:
    """The back ends that plugins register, by name (a registration of the wrong shape is reported, left out)."""
    return {name: factory for name, (_plugin, factory) in engine_registrations(plugin_host).items()}


def engine_registrations(plugin_host: Registrations) -> dict[str, tuple[str, EngineFactory]]:
    """The registered back ends by name, each as (the plugin that registered it, its factory)."""
    registered = plugin_host.collect("register_engines", _not_an_engine)
    return {name: (plugin, factory) for plugin, (name, factory) in registered}


def _not_an_engine(item: Any) -> str | None:
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and callable(item[1])):
        return "not a name and an engine factory: call register(name, factory)"
    if isinstance(item[1], type):  # a class as its own factory: its methods can be checked now
        missing = [member for member in ENGINE_MEMBERS if not callable(getattr(item[1], member, None))]
        if missing:
            return f"the engine class {item[1].__name__} lacks {', '.join(missing)} (the Engine protocol)"
    return None


def missing_members(thing: object, members: tuple[str, ...]) -> list[str]:
    """The members of `members` that `thing` lacks (methods must be callable)."""
    return [
        member
        for member in members
        if not hasattr(thing, member) or (member != "id" and not callable(getattr(thing, member)))
    ]


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
    registered = engine_registrations(plugin_host)
    if backend not in registered:
        known = ", ".join([LOCAL, *sorted(registered)])
        raise EngineError(f"engine.backend: no engine named {backend!r}; the installed ones are: {known}.")
    plugin, factory = registered[backend]
    who = f"The {backend} engine (plugin {plugin})"
    fallback = bool(settings.get("fallback_to_local", False))
    try:
        engine = factory(dict(settings.get("backends", {}).get(backend, {})))
    except EngineError as exc:
        if not fallback:
            raise
        warn(f"The {backend} engine cannot be used: {exc} This machine's engine takes the jobs.")
        return local_factory()
    except KeyError as exc:
        raise EngineError(
            f"{who} needs the setting {exc.args[0]!r}: add it to the [engine.backends.{backend}] table of the config."
        ) from None
    except Exception as exc:
        raise EngineError(f"{who} could not be made: {type(exc).__name__}: {exc}") from None
    missing = missing_members(engine, ENGINE_MEMBERS)
    if missing:
        raise EngineError(f"{who} lacks {', '.join(missing)} (the Engine protocol, docs/plugins.md).")
    return FallbackEngine(engine, local_factory if fallback else None, warn, who)


class FallbackEngine:
    """A back end that hands its jobs to this machine's engine when it cannot be reached (if allowed)."""

    def __init__(
        self, engine: Engine, local_factory: Callable[[], Engine] | None, warn: Warn = log.warning, who: str = ""
    ):
        self.engine, self.local_factory, self.warn = engine, local_factory, warn
        self.who = who or f"The {getattr(engine, 'name', 'plugin')} engine"
        """How messages name the back end: 'The NAME engine (plugin PLUGIN)'."""
        self.name = str(getattr(engine, "name", "") or who)
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
            job = self.guarded(lambda: self.engine.submit(request), "submit")
        except EngineUnavailable as exc:
            message = self.take_over(exc)
            return FallbackJob(self, request, self.local().submit(request), message)
        missing = missing_members(job, JOB_MEMBERS)
        if missing:
            raise EngineError(
                f"{self.who}: its submit() gave a job that lacks {', '.join(missing)} (the Job protocol)."
            )
        return FallbackJob(self, request, job)

    def guarded(self, call: Callable[[], T], what: str) -> T:
        """`call` into the plugin's engine: its EngineErrors pass, anything else becomes one naming the plugin."""
        try:
            return call()
        except EngineError:
            raise
        except Exception as exc:
            raise JobFailed(f"{self.who} failed in {what}: {type(exc).__name__}: {exc}") from None

    def checked(self, result: object) -> Result:
        """A plugin engine's result, held to the Result contract; the messages name the plugin and the field."""
        return check_result(result, self.who)

    def health(self) -> dict[str, Any]:
        try:
            return self.guarded(self.engine.health, "health()")
        except EngineUnavailable as exc:
            message = self.take_over(exc)
            return {**self.local().health(), "warning": message}

    def models(self) -> list[dict[str, Any]]:
        return self.guarded(self.engine.models, "models()")

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
                    if event.get("kind") not in FINISHED:
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
        result = (
            self.job.result() if self.warning else self.owner.checked(self.owner.guarded(self.job.result, "result()"))
        )
        if self.warning:
            return result.model_copy(update={"warnings": [self.warning, *result.warnings]})
        return result

    def cancel(self) -> None:
        self.job.cancel()


def check_result(result: object, who: str) -> Result:
    """`result` as a valid Result with as many PNG images as seeds; JobFailed naming `who` and the field when it is
    not. A sampler that is no sampler name is left out of it (with a warning), never stopping the work."""
    from pydantic import ValidationError

    from dreamtray.request import Result, describe_validation_error
    from dreamtray.samplers import SamplerError, parse

    if not isinstance(result, Result | dict):
        raise JobFailed(f"{who} gave a {type(result).__name__}, not a dreamtray.api.Result, from job.result().")
    try:
        result = Result.model_validate(result.model_dump() if isinstance(result, Result) else result)
    except ValidationError as exc:
        raise JobFailed(f"{who} gave an invalid Result ({describe_validation_error(exc)}).") from None
    if not result.images or len(result.images) != len(result.seeds):
        raise JobFailed(
            f"{who} gave a Result with {len(result.images)} images and {len(result.seeds)} seeds "
            "(Result.images and Result.seeds: one seed per image, at least one)."
        )
    for number, image in enumerate(result.images):
        if not image.startswith(PNG_SIGNATURE):
            raise JobFailed(f"{who} gave a Result whose images[{number}] is not PNG bytes.")
    if result.sampler:
        try:
            parse(result.sampler)
        except SamplerError as exc:
            warning = f"{who} gave Result.sampler {result.sampler!r}, not a sampler name ({exc}); it is left out."
            return result.model_copy(update={"sampler": "", "warnings": [*result.warnings, warning]})
    return result
