"""Whether the session has somewhere to show the tray icon: a system tray (XEmbed, the `_NET_SYSTEM_TRAY_Sn`
selection on X11) for pystray's GTK and X backends, a StatusNotifier watcher on the session bus for the
AppIndicator backend. Checked once at start, so that an icon with nowhere to show is said, not silent."""

from __future__ import annotations

import os

SNI_WATCHER = "org.kde.StatusNotifierWatcher"
NO_TRAY_ADVICE = (
    "The hotkeys and `dreamtray trigger` still work. To see the icon, run a panel with a system tray "
    "(or, on GNOME, the AppIndicator extension), then start dreamtray again."
)


def tray_host_problem(backend: str | None) -> str | None:
    """A sentence saying why the icon has nowhere to show, or None when a tray host is there (or unknown)."""
    try:
        if backend in ("gtk", "xorg") and os.environ.get("DISPLAY"):
            if not _x11_tray_owned(os.environ["DISPLAY"]):
                return "No system tray is running in this X session, so the dreamtray icon has nowhere to show."
        elif backend == "appindicator" and not _bus_name_owned(SNI_WATCHER):
            return f"No StatusNotifier host ({SNI_WATCHER}) is on the session bus, so the icon has nowhere to show."
    except Exception:  # a check that cannot be made says nothing either way
        return None
    return None


def _x11_tray_owned(display_name: str) -> bool:
    from Xlib import display

    conn = display.Display(display_name)
    try:
        selection = conn.intern_atom(f"_NET_SYSTEM_TRAY_S{conn.get_default_screen()}")
        return conn.get_selection_owner(selection) != 0
    finally:
        conn.close()


def _bus_name_owned(name: str) -> bool:
    from gi.repository import Gio, GLib

    bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
    reply = bus.call_sync(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameHasOwner",
        GLib.Variant("(s)", (name,)),
        GLib.VariantType("(b)"),
        Gio.DBusCallFlags.NONE,
        2000,
        None,
    )
    return bool(reply.unpack()[0])
