"""The plugin manager: finds plugins through the `dreamtray` entry-point group and keeps a bad one from hurting.

Plugins load lazily, on first use. `DREAMTRAY_PLUGINS` names the ones to load (comma-separated; empty loads
none), so tests load exactly what they mean to. `DREAMTRAY_TRACE_HOOKS=1` logs every hook call.
A plugin that fails to import, or raises in a hook, is recorded with the reason and skipped for that call;
the host and every other plugin go on.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from dreamtray import hookspecs

if TYPE_CHECKING:
    from dreamtray.api import Action
    from dreamtray.request import Request

GROUP = "dreamtray"
ENV_PLUGINS = "DREAMTRAY_PLUGINS"
ENV_TRACE = "DREAMTRAY_TRACE_HOOKS"
log = logging.getLogger("dreamtray.plugins")


class UnknownAction(ValueError):
    """An action name that no plugin registered."""


@dataclass
class PluginRecord:
    """What `dreamtray plugins` shows about one plugin."""

    name: str
    version: str = ""
    distribution: str = ""
    hooks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
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
            self.records[entry_point.name] = record
            try:
                plugin = entry_point.load()
                self.pm.register(plugin, name=entry_point.name)
            except Exception as exc:
                record.loaded = False
                self._report(record, f"could not be loaded: {type(exc).__name__}: {exc}", exc)
                continue
            record.hooks = sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or [])

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin object directly (for plugins living in an application or a test)."""
        self.load()
        self.pm.register(plugin, name=name)
        self._actions = None
        self.records[name] = PluginRecord(name, hooks=sorted(c.name for c in self.pm.get_hookcallers(plugin) or []))

    def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call `hook` on every plugin in pluggy's order, each on its own; returns the non-None results."""
        self.load()
        caller = getattr(self.pm.hook, hook)
        results = []
        for impl in reversed(caller.get_hookimpls()):
            ok, outcome = self._call_one(hook, impl.plugin_name, kwargs)
            if ok and outcome is not None:
                results.append(outcome)
        return results

    def _call_one(self, hook: str, plugin_name: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        """(True, its result) or, when the plugin raised, (False, None) after recording the failure."""
        others = [p for name, p in self.pm.list_name_plugin() if name != plugin_name]
        try:
            result = self.pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
        except Exception as exc:
            record = self.records.setdefault(plugin_name, PluginRecord(plugin_name))
            self._report(record, f"raised in {hook}: {type(exc).__name__}: {exc}", exc)
            return False, None
        return True, (result[0] if result else None)

    def prepare_request(self, request: Request) -> Request:
        """Run the prepare_request hooks one after another, each on the previous one's result."""
        from dreamtray.request import Request

        self.load()
        for impl in reversed(self.pm.hook.prepare_request.get_hookimpls()):
            ok, changed = self._call_one("prepare_request", impl.plugin_name, {"request": request})
            if ok and isinstance(changed, Request):
                request = changed
        return request

    def collect(self, hook: str) -> list[tuple[str, Any]]:
        """Gather what plugins hand to the `register` callback of a `register_*` hook, as (plugin, item)."""
        self.load()
        gathered: list[tuple[str, Any]] = []
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            batch: list[Any] = []
            ok, _ = self._call_one(
                hook, impl.plugin_name, {"register": lambda *item: batch.append(item[0] if len(item) == 1 else item)}
            )
            if ok:  # a plugin that raised half-way registers nothing
                gathered.extend((impl.plugin_name, item) for item in batch)
        return gathered

    def actions(self) -> dict[str, Action]:
        """The registered actions by name (in name order), gathered once and again only after the plugins change."""
        self.load()
        if self._actions is None:
            registered = sorted(self.collect("register_actions"), key=lambda pair: pair[1].name)
            self._actions = {action.name: action for _, action in registered}
        return self._actions

    def action(self, name: str) -> Action:
        """The action called `name`; UnknownAction, naming the ones there are, when no plugin registered it."""
        actions = self.actions()
        if name not in actions:
            known = ", ".join(sorted(actions)) or "none: no action plugin is loaded"
            raise UnknownAction(f"No action called {name!r}. Actions: {known}.")
        return actions[name]

    def _report(self, record: PluginRecord, message: str, exc: BaseException) -> None:
        record.errors.append(message)
        log.warning("plugin %s %s", record.name, message)
        log.debug("".join(traceback.format_exception(exc)))

    def _trace_before(self, hook_name: str, hook_impls: list, kwargs: dict[str, Any]) -> None:
        names = ", ".join(impl.plugin_name for impl in hook_impls)
        print(f"[dreamtray hook] {hook_name}({', '.join(kwargs)}) -> {names}", file=sys.stderr)

    def _trace_after(self, outcome: Any, hook_name: str, hook_impls: list, kwargs: dict[str, Any]) -> None:
        status = "raised" if outcome.exception else "returned"
        print(f"[dreamtray hook] {hook_name} {status}", file=sys.stderr)


def _wanted_names() -> set[str] | None:
    value = os.environ.get(ENV_PLUGINS)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}
