"""The tray's menu, as a pystray Menu built from the TrayHost's state (rebuilt with `icon.update_menu()`).

pystray calls menu actions on its own thread (GTK's main loop): every action here runs on a thread of its
own, guarded, so that a slow or failing one neither freezes nor ends the tray.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dreamtray.desktop import autostart
from dreamtray.route import REFINE_LAST

if TYPE_CHECKING:
    from dreamtray.desktop.tray import TrayHost

log = logging.getLogger("dreamtray.desktop.tray")
NO_STYLE = "None"


def build_menu(host: TrayHost) -> Any:
    """The whole menu; plugin items come from the `tray_menu_items` hooks, each plugin isolated."""
    from pystray import Menu, MenuItem

    def act(work: Callable[[], Any], what: str) -> Callable[[], None]:
        return lambda: host.in_background(work, what)

    return Menu(
        MenuItem(
            "Image from selection to clipboard",
            act(lambda: host.from_selection("clipboard", "menu"), "image to clipboard"),
            default=True,
        ),
        MenuItem(
            "Wallpaper from selection",
            act(lambda: host.from_selection("wallpaper", "menu"), "wallpaper from selection"),
        ),
        MenuItem("Type a prompt…", act(lambda: host.open_prompt_box(), "opening the prompt box")),
        MenuItem(
            "New wallpaper from the last prompt",
            act(host.wallpaper_again, "new wallpaper"),
            enabled=lambda item: bool(host.last_prompt),
        ),
        MenuItem(
            "Refine last image with selection",
            act(lambda: host.from_selection(REFINE_LAST, "menu"), "refining the last image"),
        ),
        MenuItem("Queue: empty", None, enabled=False, visible=lambda item: not host.queue.entries()),
        MenuItem(lambda item: queue_title(host), Menu(lambda: queue_items(host))),
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


def queue_title(host: TrayHost) -> str:
    """'Queue: 1 making, 2 waiting'."""
    from dreamtray.desktop.job_queue import State

    states = [job.state for job in host.queue.entries()]
    making, waiting = states.count(State.RUNNING), states.count(State.WAITING)
    return "Queue: " + ", ".join(
        part for part in (making and f"{making} making", waiting and f"{waiting} waiting") if part
    )


def queue_items(host: TrayHost) -> list[Any]:
    """One item per queued image, which cancels it: 'Cancel #3 (making 40%) clipboard: a lighthouse'."""
    from pystray import MenuItem

    from dreamtray.desktop.tray import job_state, short

    def cancel(number: int) -> Callable[[], None]:
        return lambda: host.in_background(lambda: host.cancel(number), f"cancelling #{number}")

    return [
        MenuItem(
            f"Cancel #{job.number} ({job_state(job)}) {job.item.action}: {short(job.item.prompt, 40)}",
            cancel(job.number),
        )
        for job in host.queue.entries()
    ]


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
        exact = [i for i in found if i.text == label]
        if not found:
            where = f" under {' > '.join(path[:depth])}" if depth else ""
            return {"ok": False, "message": f"No menu item {label!r}{where}."}
        item = (exact or found)[0]
    if item is None:
        return {"ok": False, "message": "Name the item to pick."}
    if item.submenu is not None:
        return {"ok": False, "message": f"{item.text!r} opens a submenu: name one of its items too."}
    if not item.enabled:
        return {"ok": False, "message": f"{item.text!r} cannot be picked now."}
    item(icon)
    return {"ok": True, "message": f"Picked {item.text!r}."}


def style_items(host: TrayHost) -> list[Any]:
    """'None' and every registered style as radio items, grouped by pack when there are several."""
    from pystray import Menu, MenuItem

    def choice(name: str, label: str) -> Any:
        return MenuItem(
            label,
            lambda: host.in_background(lambda: choose_style(host, name), "choosing a style"),
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


def engine_items(host: TrayHost) -> list[Any]:
    """The engines to choose from (local first, then those plugins register), as radio items."""
    from pystray import MenuItem

    from dreamtray.engine.backends import engine_names

    def choice(name: str) -> Any:
        return MenuItem(
            name,
            lambda: host.in_background(lambda: choose_engine(host, name), "choosing an engine"),
            checked=lambda item: host.app.config.engine.backend == name,
            radio=True,
        )

    return [choice(name) for name in engine_names(host.app.plugins)]


def choose_engine(host: TrayHost, name: str) -> None:
    """Use the engine `name` for every new image; it is saved in the config."""
    from dreamtray.config import set_value

    set_value("engine.backend", name, host.app.loaded_config.path)
    host.app.reload_config()
    host._refresh_menu()


def _current_style(host: TrayHost) -> str:
    return host.app.config.style.strip().casefold()


def choose_style(host: TrayHost, name: str) -> None:
    """Make `name` ('' for none) the style of every new image; it is saved in the config."""
    from dreamtray.config import set_value

    set_value("style", name, host.app.loaded_config.path)
    host.app.reload_config()
    host._refresh_menu()


def plugin_status_items(host: TrayHost) -> list[Any]:
    from pystray import MenuItem

    host.app.plugins.load()
    records = list(host.app.plugins.records.values())
    if not records:
        return [MenuItem("No plugins loaded", None, enabled=False)]
    return [MenuItem(f"{r.name} {r.version} ({r.status})".replace("  ", " "), None, enabled=False) for r in records]


def plugin_items(host: TrayHost) -> list[Any]:
    """Items that plugins add; an item's callback gets the host and runs on its own thread."""
    from pystray import MenuItem

    from dreamtray.api import MenuItem as PluginItem

    items = []
    for batch in host.app.plugins.call("tray_menu_items", host=host):
        for entry in batch if isinstance(batch, list | tuple) else [batch]:
            if not isinstance(entry, PluginItem):
                log.warning("a plugin's tray_menu_items gave %r, not a dreamtray.api.MenuItem; left out", entry)
                continue
            items.append(MenuItem(entry.label, _plugin_action(host, entry)))
    return items


def _plugin_action(host: TrayHost, entry: Any) -> Callable[[], None]:
    return lambda: host.in_background(lambda: entry.callback(host), f"the plugin item {entry.label!r}")


def _open_gallery(host: TrayHost) -> None:
    from dreamtray.desktop.tray import open_folder

    open_folder(host.app.gallery.folder)


def _autostart_enabled() -> bool:
    try:
        return autostart.is_enabled()
    except Exception:
        log.warning("could not tell whether dreamtray starts at login", exc_info=True)
        return False


def _toggle_autostart(host: TrayHost) -> None:
    if autostart.is_enabled():
        autostart.disable()
    else:
        autostart.enable()
    host._refresh_menu()
