"""Global hotkeys from the config's `hotkeys` table (action name -> pynput key string), through pynput.

A malformed key string is reported with the config key and what is wrong with it, and only that hotkey is
left out. On Wayland no program may grab keys for the whole desktop: the host says so once and points at
`dreamtray trigger`, which a desktop's own shortcut settings can run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dreamtray.display import display_server

log = logging.getLogger("dreamtray.desktop.hotkeys")

WAYLAND_ADVICE = (
    "Global hotkeys cannot work on Wayland: bind `dreamtray trigger clipboard` (and `dreamtray trigger wallpaper`) "
    "as custom shortcuts in your desktop's keyboard settings instead."
)
MODIFIER_WORDS = {"ctrl", "control", "alt", "shift", "cmd", "super", "win", "meta", "alt_gr"}


@dataclass
class Bindings:
    """The hotkeys that can be used (key string -> action) and one line for each that cannot."""

    keys: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def is_wayland(environ: Mapping[str, str] | None = None) -> bool:
    """True on a Wayland session, where global key grabs are impossible: the session says so (even to a program
    that sees only Xwayland), or a live compositor answers on WAYLAND_DISPLAY (a stale one does not count)."""
    env = os.environ if environ is None else environ
    return env.get("XDG_SESSION_TYPE", "").lower() == "wayland" or display_server(env) == "wayland"


def check_hotkey(combo: str) -> str | None:
    """None when pynput accepts `combo`, else what is wrong with it, in words."""
    from pynput.keyboard import HotKey

    try:
        HotKey.parse(combo)
        return None
    except ValueError:
        pass
    parts = combo.split("+")
    if any(not part for part in parts):
        return "it has an empty part (two '+' in a row, or one at an end); join keys with a single '+'"
    seen: set[str] = set()
    for part in parts:
        if part.lower() in seen:
            return f"{part!r} is named twice"
        seen.add(part.lower())
        problem = _check_part(part)
        if problem:
            return problem
    return "pynput cannot read it; write keys like '<ctrl>+<alt>+i'"


def _check_part(part: str) -> str | None:
    from pynput.keyboard import HotKey

    try:
        HotKey.parse(part)
        return None
    except ValueError:
        pass
    if part.lower() in MODIFIER_WORDS or (len(part) > 1 and not part.startswith("<")):
        return f"{part!r} is not a key: special keys go in angle brackets, like '<{part.strip('<>').lower()}>'"
    if part.startswith("<") and part.endswith(">"):
        return (
            f"{part!r} is not a key name pynput knows; use names like <ctrl>, <alt>, <shift>, <cmd>, "
            "<f1>...<f12>, <space>, <enter>, <page_up>"
        )
    return f"{part!r} is not one key: write one character, or a special key in angle brackets"


def bindings_from_config(hotkeys: Mapping[str, str], actions: set[str]) -> Bindings:
    """Check every `hotkeys.<action> = "<keys>"`; '' turns one off. `actions` are the names that can run."""
    bindings = Bindings()
    for action, combo in hotkeys.items():
        if not combo:
            continue
        where = f"hotkeys.{action} = {combo!r}"
        problem = check_hotkey(combo)
        if problem:
            bindings.problems.append(f"{where}: {problem}; this hotkey is off")
        elif action not in actions:
            known = ", ".join(sorted(actions)) or "none"
            bindings.problems.append(f"{where}: no action called {action!r} (actions: {known}); this hotkey is off")
        elif _canonical(combo) in {_canonical(k) for k in bindings.keys}:
            other = next(a for k, a in bindings.keys.items() if _canonical(k) == _canonical(combo))
            bindings.problems.append(f"{where}: the same keys already run {other!r}; this hotkey is off")
        else:
            bindings.keys[combo] = action
    return bindings


def _canonical(combo: str) -> frozenset[Any]:
    from pynput.keyboard import HotKey

    return frozenset(HotKey.parse(combo))


class HotkeyListener:
    """pynput's GlobalHotKeys for some bindings; each press calls `on_press(action)` on pynput's thread."""

    def __init__(self, keys: Mapping[str, str], on_press: Callable[[str], None]) -> None:
        self.keys = dict(keys)
        self.on_press = on_press
        self._listener: Any = None

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> None:
        if self._listener is not None or not self.keys:
            return
        from pynput.keyboard import GlobalHotKeys

        self._listener = GlobalHotKeys({combo: self._caller(action) for combo, action in self.keys.items()})
        self._listener.start()
        self._listener.wait()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            _wake_xorg_listener(self._listener)
            self._listener.join(timeout=5)
            self._listener = None

    def _caller(self, action: str) -> Callable[[], None]:
        def pressed() -> None:
            try:
                self.on_press(action)
            except Exception:  # never let a callback end pynput's listener thread
                log.exception("hotkey for %s failed", action)

        return pressed


def _wake_xorg_listener(listener: Any) -> None:
    """pynput's X11 listener asks to stop on the connection that is blocked waiting for key events, so it
    would only end at the next key press; asking on its other, idle connection ends it at once."""
    display, context = getattr(listener, "_display_stop", None), getattr(listener, "_context", None)
    if display is None or context is None:
        return
    try:
        display.record_disable_context(context)
        display.flush()
    except Exception:  # already closed: the listener has ended
        pass
