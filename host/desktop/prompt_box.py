"""The prompt box: a small always-on-top window to type a prompt (or pick one of the last), choose the style and
the action. Enter makes the image, Escape closes the box.

It is GTK 3 where the tray runs GTK's main loop (pystray's gtk and appindicator back ends) and Tk elsewhere.
Both show a live preview beside the text when the offer brings one (desktop/live_preview.py), the prompt
expansion toggle and the editable expansion (desktop/prompt_box_live.py, the logic they share), and the "Same
subject" toggle when there is a last image to keep the subject of.
It never takes the selection: its text field does not select its text on focus and does not offer what is
selected in it as the PRIMARY selection, so the text the user had selected stays theirs.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dreamtray.desktop.prompt_box_live import WAITING, BoxLive

if TYPE_CHECKING:
    from dreamtray.desktop.live_preview import LivePreview

log = logging.getLogger("dreamtray.prompt_box")
TITLE = "dreamtray: new image"
NO_STYLE = "None"
PLACEHOLDER = "Describe the image, then press Enter"
PREVIEW_BOX = 256
"""The live preview's room in the box, in pixels a side."""


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
    live: LivePreview | None = None
    """The live preview of this opening, else None."""
    live_note: str = ""
    """Why there is no live preview, shown in the box ('' to show nothing)."""
    expand: Callable[[str, int], str] | None = None
    """Grows the words with a seed (blocking; called on a thread of the box); None: no expansion toggle."""
    expand_on: bool = False
    """Whether the expansion toggle starts on (the config's `expand_prompts`)."""
    subject_note: str = ""
    """What the "Same subject" toggle keeps and by which method, said beside it; '' (no last image): no toggle."""


@dataclass(frozen=True)
class Choice:
    """What the user asked for: `style` is '' for none; `seed` is the live preview's, kept for the full image."""

    prompt: str
    style: str
    action: str
    seed: int | None = None
    expanded_from: str | None = None
    """The user's own words when `prompt` is their expansion (shown and maybe edited in the box)."""
    same_subject: bool = False
    """Keep the subject of the last image made (the "Same subject" toggle)."""


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


def _style_name(style: str) -> str:
    return "" if style == NO_STYLE else style


def _box_seed(offer: Offer) -> int:
    return offer.live.seed if offer.live is not None else random.randint(0, 2**32 - 1)


def _entered(live: BoxLive) -> Choice | None:
    """What Enter asks for: the prompt as the box stands, with the box's seed when a preview or an expansion was
    shown with it; None when there is no prompt."""
    prompt, words, face = live.prompt().strip(), live.choice_words(), live.face
    if not prompt:
        return None
    seed = live.seed if live.live is not None or words is not None else None
    return Choice(prompt, face.style(), face.action(), seed, words, face.same_subject())


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
            if offer.live is not None:
                offer.live.close()  # the box already open keeps its own
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
        face = _GtkFace(offer, grid, entry, style, action)
        live = BoxLive(face, offer.live, offer.expand, _box_seed(offer))
        window.add(grid)

        def close() -> None:
            self._window = None
            live.close()
            window.destroy()

        def submit() -> None:
            if live.waiting_for_expansion():
                window.error_bell()
                return
            choice = _entered(live)
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
        entry.connect("changed", lambda *_: live.words_changed())
        face.toggle.connect("toggled", lambda *_: live.words_changed())
        for widget in (style, action):
            widget.connect("changed", lambda *_: live.choice_changed())
        face.expansion_entry.connect("changed", lambda *_: live.expansion_edited())
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


class _GtkFace:
    """The GTK widgets beside and under the words (the expansion toggle and entry, the "Same subject" toggle,
    the preview and its line) as BoxLive's Face."""

    def __init__(self, offer: Offer, grid: Any, entry: Any, style: Any, action: Any) -> None:
        from gi.repository import Gtk

        self.entry, self.style_box, self.action_box = entry, style, action
        self.toggle = Gtk.CheckButton(label="_Expand the prompt", use_underline=True, active=offer.expand_on)
        self.toggle.set_can_focus(False)  # Alt+E toggles it and the typing stays in the prompt
        self.expansion_entry = Gtk.Entry(placeholder_text="The expansion shows here; edit it as you like")
        self.expansion_entry.set_width_chars(48)
        if offer.expand is not None:
            grid.attach(self.toggle, 1, 3, 1, 1)
            label = Gtk.Label(label="E_xpanded", use_underline=True, xalign=0)
            label.set_mnemonic_widget(self.expansion_entry)
            grid.attach(label, 0, 4, 1, 1)
            grid.attach(self.expansion_entry, 1, 4, 1, 1)
        self.subject: Any = None
        if offer.subject_note:
            self.subject = Gtk.CheckButton(label="Same _subject as the last image", use_underline=True)
            self.subject.set_can_focus(False)  # Alt+S
            self.subject.set_tooltip_text(offer.subject_note)
            note = Gtk.Label(label=offer.subject_note, xalign=0)
            note.set_line_wrap(True)
            note.set_max_width_chars(48)
            grid.attach(self.subject, 1, 5, 1, 1)
            grid.attach(note, 1, 6, 1, 1)
        self.image = Gtk.Image()
        self.line = Gtk.Label(label=offer.live_note or WAITING, xalign=0)
        self.line.set_line_wrap(True)
        self.line.set_max_width_chars(36)
        if offer.live is not None or offer.live_note:
            self.image.set_size_request(PREVIEW_BOX, PREVIEW_BOX)
            grid.attach(self.image, 2, 0, 1, 5)
            grid.attach(self.line, 2, 5, 1, 1)

    def words(self) -> str:
        return self.entry.get_text()

    def expansion(self) -> str:
        return self.expansion_entry.get_text()

    def set_expansion(self, text: str) -> None:
        self.expansion_entry.set_text(text)

    def toggled(self) -> bool:
        return self.toggle.get_active()

    def style(self) -> str:
        return _style_name(self.style_box.get_active_text() or NO_STYLE)

    def action(self) -> str:
        return self.action_box.get_active_text() or ""

    def same_subject(self) -> bool:
        return self.subject is not None and self.subject.get_active()

    def say(self, line: str) -> None:
        self.line.set_text(line)

    def show(self, png: bytes, tooltip: str) -> None:
        from gi.repository import GdkPixbuf

        loader = GdkPixbuf.PixbufLoader.new_with_type("png")
        loader.write(png)
        loader.close()
        self.image.set_from_pixbuf(loader.get_pixbuf())
        self.image.set_tooltip_text(tooltip)

    def after(self, seconds: float, call: Callable[[], None]) -> Any:
        from gi.repository import GLib

        def fire() -> bool:
            call()
            return False

        return GLib.timeout_add(round(seconds * 1000), fire)

    def cancel(self, handle: Any) -> None:
        from gi.repository import GLib

        GLib.source_remove(handle)

    def later(self, call: Callable[[], None]) -> None:
        from gi.repository import GLib

        def run() -> bool:
            call()
            return False

        GLib.idle_add(run)


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
            if offer.live is not None:
                offer.live.close()  # the box already open keeps its own
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
        live: BoxLive | None = None
        try:
            root.title(TITLE)
            root.attributes("-topmost", True)
            root.resizable(False, False)
            frame = ttk.Frame(root, padding=12)
            frame.grid()
            words = tkinter.StringVar(root)
            prompt = ttk.Combobox(
                frame, values=list(offer.history), width=48, exportselection=False, textvariable=words
            )
            style = ttk.Combobox(
                frame, values=[NO_STYLE, *offer.styles], state="readonly", exportselection=False, width=46
            )
            style.set(offer.style if offer.style in offer.styles else NO_STYLE)
            action = ttk.Combobox(frame, values=list(offer.actions), state="readonly", exportselection=False, width=46)
            action.set(offer.action)
            for row, (label, widget) in enumerate((("Prompt", prompt), ("Style", style), ("Action", action))):
                ttk.Label(frame, text=label).grid(row=row, column=0, sticky="w", padx=(0, 8), pady=4)
                widget.grid(row=row, column=1, pady=4)
            face = _TkFace(root, frame, offer, style, action, words)
            live = box = BoxLive(face, offer.live, offer.expand, _box_seed(offer))

            def submit(_event: Any = None) -> None:
                if box.waiting_for_expansion():
                    root.bell()
                    return
                choice = _entered(box)
                if choice is None:
                    root.bell()
                    return
                keep(choice)
                root.destroy()

            words.trace_add("write", lambda *_: box.words_changed())
            face.expand_on.trace_add("write", lambda *_: box.words_changed())
            face.grown.trace_add("write", lambda *_: box.expansion_edited())
            for widget in (style, action):
                widget.bind("<<ComboboxSelected>>", lambda _event: box.choice_changed())
            root.bind("<Return>", submit)
            root.bind("<KP_Enter>", submit)
            root.bind("<Escape>", lambda _event: root.destroy())
            root.lift()
            prompt.focus_force()
            face.poll()
            root.mainloop()
        except tkinter.TclError:
            log.warning("the prompt box failed", exc_info=True)
            try:
                root.destroy()
            except tkinter.TclError:
                pass
        finally:
            if live is not None:
                live.close()
            elif offer.live is not None:
                offer.live.close()


class _TkFace:
    """The Tk widgets beside and under the words as BoxLive's Face; calls from other threads wait in a queue
    that the Tk loop empties every POLL_MS."""

    POLL_MS = 20

    def __init__(self, root: Any, frame: Any, offer: Offer, style: Any, action: Any, words: Any) -> None:
        import queue
        import tkinter
        from tkinter import ttk

        self.root, self.style_box, self.action_box, self.words_var = root, style, action, words
        self.calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.expand_on = tkinter.BooleanVar(root, value=offer.expand_on)
        self.grown = tkinter.StringVar(root)
        self.subject = tkinter.BooleanVar(root, value=False)
        self.picture: Any = None
        if offer.expand is not None:
            ttk.Checkbutton(
                frame, text="Expand the prompt", underline=0, variable=self.expand_on, takefocus=False
            ).grid(row=3, column=1, sticky="w")
            ttk.Label(frame, text="Expanded", underline=1).grid(row=4, column=0, sticky="w", padx=(0, 8))
            expansion = ttk.Entry(frame, textvariable=self.grown, width=48, exportselection=False)
            expansion.grid(row=4, column=1, pady=4)
            root.bind("<Alt-e>", lambda _event: self.expand_on.set(not self.expand_on.get()))
            root.bind("<Alt-x>", lambda _event: expansion.focus_set())
        if offer.subject_note:
            ttk.Checkbutton(
                frame, text="Same subject as the last image", underline=5, variable=self.subject, takefocus=False
            ).grid(row=5, column=1, sticky="w")
            ttk.Label(frame, text=offer.subject_note, wraplength=380).grid(row=6, column=1, sticky="w")
            root.bind("<Alt-s>", lambda _event: self.subject.set(not self.subject.get()))
        self.image = ttk.Label(frame)
        self.line = ttk.Label(frame, text=offer.live_note or WAITING, wraplength=PREVIEW_BOX)
        if offer.live is not None or offer.live_note:
            self.image.grid(row=0, column=2, rowspan=5, padx=(8, 0))
            self.line.grid(row=5, column=2, sticky="w", padx=(8, 0))

    def poll(self) -> None:
        self.root.after(self.POLL_MS, self.poll)  # first: a call that raises must not end the polling
        while not self.calls.empty():
            self.calls.get()()

    def words(self) -> str:
        return str(self.words_var.get())

    def expansion(self) -> str:
        return str(self.grown.get())

    def set_expansion(self, text: str) -> None:
        self.grown.set(text)

    def toggled(self) -> bool:
        return bool(self.expand_on.get())

    def style(self) -> str:
        return _style_name(self.style_box.get() or NO_STYLE)

    def action(self) -> str:
        return str(self.action_box.get())

    def same_subject(self) -> bool:
        return bool(self.subject.get())

    def say(self, line: str) -> None:
        self.line.configure(text=line)

    def show(self, png: bytes, tooltip: str) -> None:
        import base64
        import tkinter

        self.picture = tkinter.PhotoImage(master=self.root, data=base64.b64encode(png), format="png")
        self.image.configure(image=self.picture)

    def after(self, seconds: float, call: Callable[[], None]) -> Any:
        return self.root.after(round(seconds * 1000), call)

    def cancel(self, handle: Any) -> None:
        self.root.after_cancel(handle)

    def later(self, call: Callable[[], None]) -> None:
        self.calls.put(call)
