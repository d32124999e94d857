"""The tray's menu, as a pystray Menu built from the TrayHost's state (rebuilt with `icon.update_menu()`).

pystray calls menu actions on its own thread (GTK's main loop): every action here runs on a thread of its
own, guarded, so that a slow or failing one neither freezes nor ends the tray.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from dreamtray import route
from dreamtray.desktop import autostart

if TYPE_CHECKING:
    from dreamtray.app import App
    from dreamtray.desktop.job_queue import JobQueue, Snapshot
    from dreamtray.route import Task

log = logging.getLogger("dreamtray.tray")
NO_STYLE = "None"


class MenuHost(Protocol):
    """What the menu drives: the running tray (`dreamtray.desktop.tray.TrayHost`)."""

    app: App
    paused: bool
    last_prompt: str | None
    queue: JobQueue[Task]
    download_line: str

    def in_background(self, work: Callable[[], Any], what: str) -> None: ...
    def from_selection(self, action: str, origin: str = "hotkey", wait: bool = False) -> dict[str, Any]: ...
    def again(self, action: str, origin: str = "menu", wait: bool = False) -> dict[str, Any]: ...
    def more_like_this(self) -> dict[str, Any]: ...
    def open_prompt_box(self, action: str | None = None) -> dict[str, Any]: ...
    def cancel(self, number: int) -> dict[str, Any]: ...
    def running_preview(self) -> str | None: ...
    def set_paused(self, paused: bool) -> None: ...
    def unload(self) -> dict[str, Any]: ...
    def refresh_menu(self) -> None: ...
    def cancel_download(self) -> dict[str, Any]: ...
    def quit(self) -> None: ...


def build_menu(host: MenuHost) -> Any:
    """The whole menu; the entries for the selection come from the registered actions, plugin items from the
    `tray_menu_items` hooks, each plugin isolated."""
    from pystray import Menu, MenuItem

    def act(work: Callable[[], Any], what: str) -> Callable[[], None]:
        return lambda: host.in_background(work, what)

    default_action = host.app.default_action
    from_selection = [
        MenuItem(
            label,
            act(lambda name=name: host.from_selection(name, "menu"), label),
            default=name == default_action,
        )
        for label, name in route.menu_entries(host.app)
    ]

    def downloading(item: Any) -> bool:
        return bool(host.download_line)

    return Menu(
        MenuItem(lambda item: host.download_line, None, enabled=False, visible=downloading),
        MenuItem("Cancel download", act(host.cancel_download, "cancelling the download"), visible=downloading),
        *from_selection,
        MenuItem("Type a prompt…", act(lambda: host.open_prompt_box(), "opening the prompt box")),
        MenuItem(
            "Last prompt again",
            Menu(lambda: again_items(host)),
            enabled=lambda item: bool(host.last_prompt),
        ),
        MenuItem("More like this", act(host.more_like_this, "more like this")),
        MenuItem("Queue: empty", None, enabled=False, visible=lambda item: not host.queue.entries()),
        MenuItem(lambda item: queue_title(host), Menu(lambda: queue_items(host))),
        MenuItem(
            lambda item: f"Preview (prompt box): {short(host.running_preview() or '', 40)}",
            None,
            enabled=False,
            visible=lambda item: host.running_preview() is not None,
        ),
        Menu.SEPARATOR,
        MenuItem("Style", Menu(lambda: style_items(host))),
        MenuItem("Engine", Menu(lambda: engine_items(host))),
        MenuItem("Open gallery", act(lambda: _open_gallery(host), "opening the gallery")),
        MenuItem(
            "Pause hotkeys",
            act(lambda: host.set_paused(not host.paused), "pausing hotkeys"),
            checked=lambda item: host.paused,
        ),
        MenuItem("Unload model", act(host.unload, "unloading the model")),
        MenuItem(
            "Start at login",
            act(lambda: _toggle_autostart(host), "start at login"),
            checked=lambda item: _autostart_enabled(),
        ),
        MenuItem("Plugins", Menu(lambda: plugin_status_items(host))),
        *plugin_items(host),
        Menu.SEPARATOR,
        MenuItem("Quit", host.quit),
    )


def again_items(host: MenuHost) -> list[Any]:
    """One entry per action: a new image (new seed) from the last prompt, handed to that action."""
    from pystray import MenuItem

    return [
        MenuItem(action.label, lambda name=name: host.in_background(lambda: host.again(name), f"{name} again"))
        for name, action in host.app.plugins.actions().items()
    ]


def queue_title(host: MenuHost) -> str:
    """'Queue: 1 making, 2 waiting'."""
    from dreamtray.desktop.job_queue import State

    states = [job.state for job in host.queue.entries()]
    making, waiting = states.count(State.RUNNING), states.count(State.WAITING)
    parts = [f"{count} {what}" for count, what in ((making, "making"), (waiting, "waiting")) if count]
    return "Queue: " + ", ".join(parts)


def queue_items(host: MenuHost) -> list[Any]:
    """One item per queued image, which cancels it: 'Cancel #3 (making 40%) clipboard: a lighthouse'."""
    from pystray import MenuItem

    def cancel(number: int) -> Callable[[], None]:
        return lambda: host.in_background(lambda: host.cancel(number), f"cancelling #{number}")

    return [
        MenuItem(
            f"Cancel #{job.number} ({job_state(job)}) {job.item.action}: {short(job.item.prompt, 40)}",
            cancel(job.number),
        )
        for job in host.queue.entries()
    ]


def job_state(job: Snapshot[Task]) -> str:
    """'waiting', 'making', 'making 40%' or 'cancelling'."""
    from dreamtray.desktop.job_queue import State

    if job.cancelled:
        return "cancelling"
    if job.state is State.RUNNING:
        return "making" if job.percent is None else f"making {job.percent}%"
    return "waiting"


def describe_job(job: Snapshot[Task]) -> str:
    """One line for a queued image: '#3 making 40%: clipboard: a lighthouse at dusk'."""
    return f"#{job.number} {job_state(job)}: {job.item.action}: {short(job.item.prompt)}"


def short(text: str, limit: int = 60) -> str:
    """`text` on one line, cut with an ellipsis after `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe_menu(menu: Any, depth: int = 0) -> list[str]:
    """The menu as the tray shows it now, one line an item, submenus indented: ' [x]' marks a checked item,
    ' (off)' one that cannot be picked."""
    from pystray import Menu

    lines = []
    for item in menu.items:
        if item is Menu.SEPARATOR:
            lines.append("  " * depth + "-----")
            continue
        if not item.visible:
            continue
        mark = " [x]" if item.checked else ""
        off = "" if item.enabled else " (off)"
        lines.append(f"{'  ' * depth}{item.text}{mark}{off}")
        if item.submenu is not None:
            lines += describe_menu(item.submenu, depth + 1)
    return lines


def pick(menu: Any, path: list[str], icon: Any) -> dict[str, Any]:
    """Run the item that the labels in `path` lead to (each label, or its start, at its level), as a click would."""
    item = None
    for depth, label in enumerate(path):
        if item is not None:
            if item.submenu is None:
                return {"ok": False, "message": f"{item.text!r} has no items under it."}
            menu = item.submenu
        found = [i for i in menu.items if i.visible and i.text.startswith(label)]
        if not found:
            where = f" under {' > '.join(path[:depth])}" if depth else ""
            return {"ok": False, "message": f"No menu item {label!r}{where}."}
        item = next((i for i in found if i.text == label), found[0])
    if item is None:
        return {"ok": False, "message": "Name the item to pick."}
    if item.submenu is not None:
        return {"ok": False, "message": f"{item.text!r} opens a submenu: name one of its items too."}
    if not item.enabled:
        return {"ok": False, "message": f"{item.text!r} cannot be picked now."}
    item(icon)
    return {"ok": True, "message": f"Picked {item.text!r}."}


def style_items(host: MenuHost) -> list[Any]:
    """'None' and every registered style as radio items, grouped by pack when there are several."""
    from pystray import Menu, MenuItem

    def choice(name: str, label: str) -> Any:
        return MenuItem(
            label,
            lambda: host.in_background(lambda: choose_setting(host, "style", name), "choosing a style"),
            checked=lambda item: _current_style(host) == name.casefold(),
            radio=True,
        )

    styles = list(host.app.styles)
    packs: dict[str, list[Any]] = {}
    for style in styles:
        packs.setdefault(style.pack or "Other", []).append(style)
    items = [choice("", NO_STYLE)]
    if len(packs) > 1:
        items += [MenuItem(pack, Menu(*(choice(s.name, s.name) for s in members))) for pack, members in packs.items()]
    else:
        items += [choice(style.name, style.name) for style in styles]
    return items


def choose_setting(host: MenuHost, key: str, value: str) -> None:
    """Save `key = value` in the config and show it in the menu."""
    from dreamtray.config import set_value

    set_value(key, value, host.app.loaded_config.path)
    host.app.reload_config()
    host.refresh_menu()


def engine_items(host: MenuHost) -> list[Any]:
    """The engines to choose from (local first, then those plugins register), as radio items."""
    from pystray import MenuItem

    from dreamtray.engine.backends import engine_names

    def choice(name: str) -> Any:
        return MenuItem(
            name,
            lambda: host.in_background(lambda: choose_setting(host, "engine.backend", name), "choosing an engine"),
            checked=lambda item: host.app.config.engine.backend == name,
            radio=True,
        )

    return [choice(name) for name in engine_names(host.app.plugins)]


def _current_style(host: MenuHost) -> str:
    return host.app.config.style.strip().casefold()


def plugin_status_items(host: MenuHost) -> list[Any]:
    from pystray import MenuItem

    host.app.plugins.load()
    records = list(host.app.plugins.records.values())
    if not records:
        return [MenuItem("No plugins loaded", None, enabled=False)]
    return [MenuItem(f"{r.name} {r.version} ({r.status})".replace("  ", " "), None, enabled=False) for r in records]


def plugin_items(host: MenuHost) -> list[Any]:
    """Items that plugins add (submenus and radio choices too); a callback gets the host and runs on its own
    thread, and the menu is drawn again after a choice."""
    return [_plugin_item(host, plugin, entry) for plugin, entry in host.app.plugins.menu_items(host)]


def _plugin_item(host: MenuHost, plugin: str, entry: Any) -> Any:
    from pystray import Menu, MenuItem

    if entry.items:
        return MenuItem(entry.label, Menu(*(_plugin_item(host, plugin, item) for item in entry.items)))
    if entry.checked is None:
        return MenuItem(entry.label, _plugin_action(host, entry))
    return MenuItem(entry.label, _plugin_action(host, entry), checked=_plugin_check(host, plugin, entry), radio=True)


def _plugin_action(host: MenuHost, entry: Any) -> Callable[[], None]:
    def run() -> None:
        if entry.callback is not None:
            entry.callback(host)
        if entry.checked is not None:
            host.refresh_menu()

    return lambda: host.in_background(run, f"the plugin item {entry.label!r}")


def _plugin_check(host: MenuHost, plugin: str, entry: Any) -> Callable[[Any], bool]:
    """Whether a plugin's radio item is the chosen one; a plugin that raises there is named, the item unchecked."""

    def checked(item: Any) -> bool:
        try:
            return bool(entry.checked(host))
        except Exception as exc:  # plugin code, called while GTK draws the menu
            host.app.plugins.complain(plugin, f"menu item {entry.label!r}: checked raised {type(exc).__name__}: {exc}")
            return False

    return checked


def _open_gallery(host: MenuHost) -> None:
    from dreamtray.desktop.folders import open_folder

    open_folder(host.app.gallery.folder)


def _autostart_enabled() -> bool:
    try:
        return autostart.is_enabled()
    except Exception:
        log.warning("could not tell whether dreamtray starts at login", exc_info=True)
        return False


def _toggle_autostart(host: MenuHost) -> None:
    if autostart.is_enabled():
        autostart.disable()
    else:
        autostart.enable()
    host.refresh_menu()
