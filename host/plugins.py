"""The plugin manager: finds plugins through the `dreamtray` entry-point group and keeps a bad one from hurting.

Plugins load lazily, on first use. `DREAMTRAY_PLUGINS` names the ones to load (comma-separated; empty loads
none), so tests load exactly what they mean to; `DREAMTRAY_PLUGINS_DIR` names a folder whose `*.py` files and
packages load as plugins without being installed (for writing one). `DREAMTRAY_TRACE_HOOKS=1` logs every hook
call. A plugin that fails to import, calls sys.exit(), raises in a hook, registers something of the wrong kind or
returns the wrong kind, is recorded with the reason (once) and skipped for that call; the host and every other
plugin go on. A KeyboardInterrupt from a plugin on the main thread still cancels, as PluginInterrupt naming the
plugin. `image_generated` runs on a thread of its own, so that a slow plugin never holds up the next image.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from dreamtray import hookspecs
from dreamtray.plugin_imports import private_imports

if TYPE_CHECKING:
    from dreamtray.api import Action, MenuItem, SubjectMethod, TrayHost
    from dreamtray.request import Request

GROUP = "dreamtray"
ENV_PLUGINS = "DREAMTRAY_PLUGINS"
ENV_PLUGINS_DIR = "DREAMTRAY_PLUGINS_DIR"
ENV_TRACE = "DREAMTRAY_TRACE_HOOKS"
SLOW_HOOK_SECONDS = 30.0
"""A hook that `call_later` runs is reported once it has run this long (the host never waits on it)."""
MAX_LATER = 8
log = logging.getLogger("dreamtray.plugins")


class UnknownAction(ValueError):
    """An action name that no plugin registered."""


class PluginInterrupt(KeyboardInterrupt):
    """Ctrl+C (or a plugin's own KeyboardInterrupt) while a plugin's code ran on the main thread: the command is
    cancelled, and the message names the plugin."""


@dataclass
class PluginRecord:
    """What `dreamtray plugins` shows about one plugin."""

    name: str
    version: str = ""
    distribution: str = ""
    hooks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """What works today but may break (imports of private modules)."""
    loaded: bool = True

    @property
    def status(self) -> str:
        if not self.loaded:
            return "failed to load"
        return "errors" if self.errors else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "hooks": self.hooks,
            "status": self.status,
            "errors": self.errors,
            "warnings": self.warnings,
        }


class PluginHost:
    """Loads plugins and calls their hooks one plugin at a time, so that one failure stays contained."""

    def __init__(self, only: Iterable[str] | None = None) -> None:
        """`only` names the entry points to load (default: `$DREAMTRAY_PLUGINS`, else all of them)."""
        self.only = set(only) if only is not None else _wanted_names()
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self._loaded = False
        self._actions: dict[str, Action] | None = None
        self._lock = threading.Lock()
        self._later: list[threading.Thread] = []
        self._running_later: set[str] = set()
        if os.environ.get(ENV_TRACE):
            self.pm.add_hookcall_monitoring(self._trace_before, self._trace_after)

    def load(self) -> None:
        """Import the plugins named by the entry points (once)."""
        if self._loaded:
            return
        self._loaded = True
        for entry_point in metadata.entry_points(group=GROUP):
            if self.only is not None and entry_point.name not in self.only:
                continue
            dist = entry_point.dist
            record = PluginRecord(entry_point.name, dist.version if dist else "", dist.name if dist else "")
            self._load_one(record, entry_point.load)
        folder = os.environ.get(ENV_PLUGINS_DIR)
        if folder:
            for name, path in _plugins_in(Path(folder)):
                self._load_one(PluginRecord(name, distribution=str(path)), lambda path=path: _import_file(path))

    def _load_one(self, record: PluginRecord, load: Callable[[], object]) -> None:
        """Import and register one plugin, recording what went wrong (and its imports of private modules)."""
        self.records[record.name] = record
        try:
            plugin = load()
            self.pm.register(plugin, name=record.name)
        except BaseException as exc:  # SystemExit too: a plugin never ends the host
            record.loaded = False
            self._report(record, f"could not be loaded: {_describe(exc)}", exc)
            self._interrupt_if_main(record.name, "while it was loading", exc)
            return
        record.hooks = sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or [])
        for warning in private_imports(plugin):
            record.warnings.append(warning)
            log.warning("plugin %s %s", record.name, warning)

    def _interrupt_if_main(self, plugin_name: str, where: str, exc: BaseException) -> None:
        """A KeyboardInterrupt on the main thread goes on as PluginInterrupt (Ctrl+C cancels), naming the plugin."""
        if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
            raise PluginInterrupt(f"Cancelled while plugin {plugin_name} ran ({where}).") from exc

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin object directly (for plugins living in an application or a test)."""
        self.load()
        self.pm.register(plugin, name=name)
        self._actions = None
        self.records[name] = PluginRecord(name, hooks=sorted(c.name for c in self.pm.get_hookcallers(plugin) or []))

    def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call `hook` on every plugin in pluggy's order, each on its own; returns the non-None results."""
        return [outcome for _, outcome in self.call_named(hook, **kwargs)]

    def call_named(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """`call`, with each result paired with the name of the plugin that gave it."""
        self.load()
        caller = getattr(self.pm.hook, hook)
        results = []
        for impl in reversed(caller.get_hookimpls()):
            ok, outcome = self._call_one(hook, impl.plugin_name, kwargs)
            if ok and outcome is not None:
                results.append((impl.plugin_name, outcome))
        return results

    def _call_one(self, hook: str, plugin_name: str, kwargs: dict[str, Any], copy: bool = True) -> tuple[bool, Any]:
        """(True, its result) or, when the plugin raised, (False, None) after recording the failure. With `copy`,
        the plugin gets requests of its own (see `_own_copies`)."""
        others = [p for name, p in self.pm.list_name_plugin() if name != plugin_name]
        try:
            result = self.pm.subset_hook_caller(hook, remove_plugins=others)(
                **(_own_copies(kwargs) if copy else kwargs)
            )
        except BaseException as exc:  # SystemExit too: a plugin never ends the host
            self.complain(plugin_name, f"raised in {hook}: {_describe(exc)}", exc)
            self._interrupt_if_main(plugin_name, hook, exc)
            return False, None
        return True, (result[0] if result else None)

    def call_later(self, hook: str, **kwargs: Any) -> None:
        """Call `hook` on a thread of its own, so that a slow plugin never holds up the caller (the next image).

        A plugin still running after SLOW_HOOK_SECONDS is reported by name; with MAX_LATER calls still going,
        further ones are skipped (and reported) rather than pile up. `wait_later` lets a short-lived process
        give the running ones up to SLOW_HOOK_SECONDS before it exits.
        """
        self.load()
        with self._lock:
            self._later = [thread for thread in self._later if thread.is_alive()]
            if len(self._later) >= MAX_LATER:
                log.warning("%s skipped: %d earlier calls of it are still running", hook, len(self._later))
                return
            thread = threading.Thread(
                target=self._call_timed, args=(hook, kwargs), name=f"dreamtray {hook}", daemon=True
            )
            self._later.append(thread)
        thread.start()

    def wait_later(self, timeout: float = SLOW_HOOK_SECONDS) -> None:
        """Wait up to `timeout` seconds for the hooks `call_later` started; name the plugins left running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._later)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            running = sorted(self._running_later)
        for name in running:
            log.warning(
                "plugin %s: its hook did not finish within %.0f s and was stopped with dreamtray", name, timeout
            )

    def _call_timed(self, hook: str, kwargs: dict[str, Any]) -> None:
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            name = impl.plugin_name
            slow = f"{hook} ran for over {SLOW_HOOK_SECONDS:.0f} s; later images did not wait for it"
            timer = threading.Timer(SLOW_HOOK_SECONDS, self.complain, args=(name, slow))
            timer.daemon = True
            with self._lock:
                self._running_later.add(name)
            timer.start()
            try:
                self._call_one(hook, name, kwargs)
            finally:
                timer.cancel()
                with self._lock:
                    self._running_later.discard(name)

    def complain(self, plugin_name: str, message: str, exc: BaseException | None = None) -> None:
        """Record a plugin's misbehaviour, for the log and `dreamtray plugins`."""
        with self._lock:
            record = self.records.setdefault(plugin_name, PluginRecord(plugin_name))
            self._report(record, message, exc)

    def prepare_request(self, request: Request) -> Request:
        """Run the prepare_request hooks one after another, each on the previous one's result."""
        from pydantic import ValidationError

        from dreamtray.request import Request, describe_validation_error

        self.load()
        for impl in reversed(self.pm.hook.prepare_request.get_hookimpls()):
            given = request.model_copy(deep=True)
            ok, changed = self._call_one("prepare_request", impl.plugin_name, {"request": given}, copy=False)
            if not ok:
                continue
            in_place = changed is None and given != request  # requests are frozen, but not sealed
            if in_place:
                changed = given
            if changed is None:
                continue
            if not isinstance(changed, Request):
                self.complain(
                    impl.plugin_name,
                    f"prepare_request returned a {type(changed).__name__}, not a Request; its change was left out",
                )
                continue
            try:  # model_copy(update=...) skips validation: check what the plugin made
                request = Request.model_validate(changed.model_dump())
            except ValidationError as exc:
                what = "changed the request in place into an invalid one" if in_place else "returned an invalid request"
                self.complain(
                    impl.plugin_name,
                    f"prepare_request {what} ({describe_validation_error(exc)}); its change was left out"
                    + (" (return a changed copy: request.model_copy(update=...))" if in_place else ""),
                )
        return request

    def collect(self, hook: str, check: Callable[[Any], str | None] | None = None) -> list[tuple[str, Any]]:
        """Gather what plugins hand to the `register` callback of a `register_*` hook, as (plugin, item).

        `check` says what is wrong with an item (None when nothing): such items are left out, and the plugin
        that gave them is named in the log and in `dreamtray plugins`.
        """
        self.load()
        gathered: list[tuple[str, Any]] = []
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            batch: list[Any] = []
            ok, _ = self._call_one(
                hook, impl.plugin_name, {"register": lambda *item: batch.append(item[0] if len(item) == 1 else item)}
            )
            if not ok:  # a plugin that raised half-way registers nothing
                continue
            for item in batch:
                problem = check(item) if check else None
                if problem:
                    self.complain(impl.plugin_name, f"{hook} gave {_short_repr(item)}: {problem}; left out")
                else:
                    gathered.append((impl.plugin_name, item))
        return gathered

    def actions(self) -> dict[str, Action]:
        """The registered actions by name (in name order), gathered once and again only after the plugins change."""
        self.load()
        if self._actions is None:
            registered = sorted(self.collect("register_actions", _not_an_action), key=lambda pair: pair[1].name)
            self._actions = {action.name: action for _, action in registered}
        return self._actions

    def subject_methods(self) -> dict[str, SubjectMethod]:
        """The same-subject methods plugins bring (`register_subject_methods`), by name."""
        found = self.collect("register_subject_methods", _not_a_subject_method)
        return {method.name: method for _, method in found}

    def action(self, name: str) -> Action:
        """The action called `name`; UnknownAction, naming the ones there are, when no plugin registered it."""
        actions = self.actions()
        if name not in actions:
            known = ", ".join(sorted(actions)) or "none: no action plugin is loaded"
            raise UnknownAction(f"No action called {name!r}. Actions: {known}.")
        return actions[name]

    def menu_items(self, host: TrayHost) -> list[tuple[str, MenuItem]]:
        """The items plugins add to the tray menu, as (plugin, item), in plugin-name order (each plugin's own in its
        order); anything but a MenuItem is named, left out."""
        from dreamtray.api import MenuItem

        items = []
        for plugin, batch in self.call_named("tray_menu_items", host=host):
            for entry in batch if isinstance(batch, list | tuple) else [batch]:
                if isinstance(entry, MenuItem):
                    items.append((plugin, entry))
                else:
                    self.complain(
                        plugin, f"tray_menu_items gave {_short_repr(entry)}: not a dreamtray.api.MenuItem; left out"
                    )
        return sorted(items, key=lambda pair: pair[0])

    def _report(self, record: PluginRecord, message: str, exc: BaseException | None) -> None:
        if message in record.errors:  # each problem told once, however often the hook runs
            return
        record.errors.append(message)
        log.warning("plugin %s %s", record.name, message)
        if exc is not None:
            log.debug("".join(traceback.format_exception(exc)))

    def _trace_before(self, hook_name: str, hook_impls: list, kwargs: dict[str, Any]) -> None:
        names = ", ".join(impl.plugin_name for impl in hook_impls)
        print(f"[dreamtray hook] {hook_name}({', '.join(kwargs)}) -> {names}", file=sys.stderr)

    def _trace_after(self, outcome: Any, hook_name: str, hook_impls: list, kwargs: dict[str, Any]) -> None:
        status = "raised" if outcome.exception else "returned"
        print(f"[dreamtray hook] {hook_name} {status}", file=sys.stderr)


def _not_an_action(item: Any) -> str | None:
    from dreamtray.api import Action

    return None if isinstance(item, Action) else "not a dreamtray.api.Action"


def _not_a_subject_method(item: Any) -> str | None:
    from dreamtray.api import SubjectMethod

    return None if isinstance(item, SubjectMethod) else "not a dreamtray.api.SubjectMethod"


def _describe(exc: BaseException) -> str:
    """An exception in a few words; `sys.exit()` said plainly."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}), which dreamtray ignores"
    if isinstance(exc, KeyboardInterrupt):
        return "KeyboardInterrupt (Ctrl+C, or the plugin raised it)"
    return f"{type(exc).__name__}: {exc}"


def _own_copies(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The hook's arguments with each request a copy of its own, so that a plugin changing one in place changes
    nothing another plugin, the engine or the gallery sees."""
    from pydantic import BaseModel

    return {
        key: value.model_copy(deep=True) if isinstance(value, BaseModel) else value for key, value in kwargs.items()
    }


def _plugins_in(folder: Path) -> list[tuple[str, Path]]:
    """The plugins in a development folder: each `name.py`, and each `name/` package, by name."""
    if not folder.is_dir():
        log.warning("%s=%s is not a folder; no plugins loaded from it", ENV_PLUGINS_DIR, folder)
        return []
    found = [(path.stem, path) for path in folder.glob("*.py") if not path.name.startswith("_")]
    found += [(path.name, path / "__init__.py") for path in folder.iterdir() if (path / "__init__.py").is_file()]
    return sorted(found)


def _import_file(path: Path) -> object:
    """Import a plugin from a file (a package when it is an `__init__.py`), as the module `dreamtray_dev_<name>`."""
    name = path.parent.name if path.name == "__init__.py" else path.stem
    module_name = f"dreamtray_dev_{name}"
    package = [str(path.parent)] if path.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(module_name, path, submodule_search_locations=package)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _short_repr(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


def _wanted_names() -> set[str] | None:
    value = os.environ.get(ENV_PLUGINS)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}
