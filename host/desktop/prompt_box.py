"""The prompt box: a small always-on-top window to type a prompt (or pick one of the last), choose the style and
the action. Enter makes the image, Escape closes the box.

It is GTK 3 where the tray runs GTK's main loop (pystray's gtk and appindicator back ends) and Tk elsewhere.
It never takes the selection: its text field does not select its text on focus and does not offer what is
selected in it as the PRIMARY selection, so the text the user had selected stays theirs.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("dreamtray.prompt_box")
TITLE = "dreamtray: new image"
NO_STYLE = "None"
PLACEHOLDER = "Describe the image, then press Enter"


class PromptBoxUnavailable(RuntimeError):
    """No toolkit for the prompt box here; the message says what to use instead."""


@dataclass(frozen=True)
class Offer:
    """What the box shows: the last prompts (newest first), the styles and actions, and the current choices."""

    history: Sequence[str]
    styles: Sequence[str]
    style: str
    actions: Sequence[str]
    action: str


@dataclass(frozen=True)
class Choice:
    """What the user asked for: `style` is '' for none."""

    prompt: str
    style: str
    action: str


class PromptBox(Protocol):
    def open(self, offer: Offer, on_choice: Callable[[Choice], None]) -> None:
        """Show the box (from any thread); `on_choice` is called once Enter is pressed with a prompt."""


def make_prompt_box(environ: Mapping[str, str] = os.environ) -> PromptBox:
    """The GTK box where the tray runs GTK, else the Tk one; PromptBoxUnavailable where neither can run."""
    if environ.get("PYSTRAY_BACKEND") in ("gtk", "appindicator"):
        return GtkPromptBox()
    if sys.platform == "darwin":  # Tk must own the main thread there, which the tray's loop holds
        raise PromptBoxUnavailable(_instead("The prompt box needs GTK, which the tray does not use on macOS."))
    try:
        import tkinter  # noqa: F401
    except ImportError:
        raise PromptBoxUnavailable(
            _instead("The prompt box needs Tk (on Debian and Ubuntu: apt install python3-tk).")
        ) from None
    return TkPromptBox()


def _instead(reason: str) -> str:
    return f'{reason} Meanwhile, `dreamtray trigger clipboard --prompt "..."` makes an image from typed text.'


def _choice(prompt: str, style: str, action: str) -> Choice | None:
    prompt = prompt.strip()
    if not prompt:
        return None
    return Choice(prompt, "" if style == NO_STYLE else style, action)


class GtkPromptBox:
    """The box on GTK's main loop (which pystray runs); one at a time, a second open brings it to the front."""

    def __init__(self) -> None:
        self._window: Any = None

    def open(self, offer: Offer, on_choice: Callable[[Choice], None]) -> None:
        from gi.repository import GLib

        GLib.idle_add(self._open, offer, on_choice)

    def _open(self, offer: Offer, on_choice: Callable[[Choice], None]) -> bool:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gdk, Gtk

        if self._window is not None:
            self._present(self._window)
            return False
        Gtk.Settings.get_default().set_property("gtk-entry-select-on-focus", False)
        window = Gtk.Window(title=TITLE)
        window.set_wmclass("dreamtray", "dreamtray")
        window.set_keep_above(True)
        window.set_skip_taskbar_hint(True)
        window.set_type_hint(Gdk.WindowTypeHint.DIALOG)
        window.set_position(Gtk.WindowPosition.CENTER)
        window.set_resizable(False)
        window.set_border_width(12)

        prompt = Gtk.ComboBoxText.new_with_entry()
        for text in offer.history:
            prompt.append_text(text)
        entry = prompt.get_child()
        entry.set_placeholder_text(PLACEHOLDER)
        entry.set_width_chars(48)
        style = _gtk_choices(Gtk, [NO_STYLE, *offer.styles], offer.style or NO_STYLE)
        action = _gtk_choices(Gtk, offer.actions, offer.action)

        grid = Gtk.Grid(row_spacing=8, column_spacing=8)
        for row, (label, widget) in enumerate((("Prompt", prompt), ("Style", style), ("Action", action))):
            grid.attach(Gtk.Label(label=label, xalign=0), 0, row, 1, 1)
            grid.attach(widget, 1, row, 1, 1)
        window.add(grid)

        def close() -> None:
            self._window = None
            window.destroy()

        def submit() -> None:
            choice = _choice(entry.get_text(), style.get_active_text() or NO_STYLE, action.get_active_text() or "")
            if choice is None:
                window.error_bell()
                entry.grab_focus()
                return
            close()
            on_choice(choice)

        def on_key(_widget: Any, event: Any) -> bool:
            if event.keyval == Gdk.KEY_Escape:
                close()
                return True
            if event.keyval in (Gdk.KEY_Return, Gdk.KEY_KP_Enter):
                submit()
                return True
            return False

        def on_delete(*_: Any) -> bool:
            close()
            return True

        window.connect("key-press-event", on_key)
        window.connect("delete-event", on_delete)
        self._window = window
        window.show_all()
        entry.grab_focus()
        self._present(window)
        return False

    @staticmethod
    def _present(window: Any) -> None:
        """Raise and focus the box; on X11 with the server's time, so that window managers let it take focus."""
        try:
            import gi

            gi.require_version("GdkX11", "3.0")
            from gi.repository import GdkX11

            window.present_with_time(GdkX11.x11_get_server_time(window.get_window()))
        except (ImportError, TypeError, ValueError):  # not on X11 (Wayland): GTK's own present
            window.present()


def _gtk_choices(gtk: Any, names: Sequence[str], current: str) -> Any:
    box = gtk.ComboBoxText()
    for name in names:
        box.append_text(name)
    box.set_active(list(names).index(current) if current in names else 0)
    return box


class TkPromptBox:
    """The box in a Tk window on a thread of its own (Tk is used from that thread alone); one at a time."""

    def __init__(self) -> None:
        self._showing = threading.Lock()

    def open(self, offer: Offer, on_choice: Callable[[Choice], None]) -> None:
        if not self._showing.acquire(blocking=False):
            log.info("the prompt box is open already")
            return
        threading.Thread(target=self._run, args=(offer, on_choice), name="dreamtray-prompt-box", daemon=True).start()

    def _run(self, offer: Offer, on_choice: Callable[[Choice], None]) -> None:
        chosen: list[Choice] = []
        try:
            self._show(offer, chosen.append)
        finally:
            self._showing.release()
        for choice in chosen:
            on_choice(choice)

    def _show(self, offer: Offer, keep: Callable[[Choice], None]) -> None:
        import tkinter
        from tkinter import ttk

        root = tkinter.Tk(className="dreamtray")
        try:
            root.title(TITLE)
            root.attributes("-topmost", True)
            root.resizable(False, False)
            frame = ttk.Frame(root, padding=12)
            frame.grid()
            prompt = ttk.Combobox(frame, values=list(offer.history), width=48, exportselection=False)
            style = ttk.Combobox(
                frame, values=[NO_STYLE, *offer.styles], state="readonly", exportselection=False, width=46
            )
            style.set(offer.style if offer.style in offer.styles else NO_STYLE)
            action = ttk.Combobox(frame, values=list(offer.actions), state="readonly", exportselection=False, width=46)
            action.set(offer.action)
            for row, (label, widget) in enumerate((("Prompt", prompt), ("Style", style), ("Action", action))):
                ttk.Label(frame, text=label).grid(row=row, column=0, sticky="w", padx=(0, 8), pady=4)
                widget.grid(row=row, column=1, pady=4)

            def submit(_event: Any = None) -> None:
                choice = _choice(prompt.get(), style.get(), action.get())
                if choice is None:
                    root.bell()
                    return
                keep(choice)
                root.destroy()

            root.bind("<Return>", submit)
            root.bind("<KP_Enter>", submit)
            root.bind("<Escape>", lambda _event: root.destroy())
            root.lift()
            prompt.focus_force()
            root.mainloop()
        except tkinter.TclError:
            log.warning("the prompt box failed", exc_info=True)
            try:
                root.destroy()
            except tkinter.TclError:
                pass
