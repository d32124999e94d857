"""The prompt box: a small always-on-top window to type a prompt (or pick one of the last), choose the style and
the action. Enter makes the image, Escape closes the box.

It is GTK 3 where the tray runs GTK's main loop (pystray's gtk and appindicator back ends) and Tk elsewhere.
The GTK box shows a live preview beside the text when the offer brings one (desktop/live_preview.py).
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

if TYPE_CHECKING:
    from dreamtray.desktop.live_preview import LivePreview, Preview

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
    """The live preview of this opening (GTK box only), else None."""
    live_note: str = ""
    """Why there is no live preview, shown in the box ('' to show nothing)."""
    expand: Callable[[str, int], str] | None = None
    """Grows the words with a seed (blocking; called on a thread of the box); None: no expansion toggle (GTK only)."""
    expand_on: bool = False
    """Whether the expansion toggle starts on (the config's `expand_prompts`)."""


@dataclass(frozen=True)
class Choice:
    """What the user asked for: `style` is '' for none; `seed` is the live preview's, kept for the full image."""

    prompt: str
    style: str
    action: str
    seed: int | None = None
    expanded_from: str | None = None
    """The user's own words when `prompt` is their expansion (shown and maybe edited in the box)."""


class PromptBox(Protocol):
    shows_previews: bool
    """Whether the box can show a live preview (the offer's `live`)."""

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


def _choice(
    prompt: str, style: str, action: str, seed: int | None = None, expanded_from: str | None = None
) -> Choice | None:
    prompt = prompt.strip()
    if not prompt:
        return None
    return Choice(prompt, "" if style == NO_STYLE else style, action, seed, expanded_from)


class GtkPromptBox:
    """The box on GTK's main loop (which pystray runs); one at a time, a second open brings it to the front."""

    shows_previews = True

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
        seed = offer.live.seed if offer.live is not None else random.randint(0, 2**32 - 1)
        live = _GtkLive(offer, grid, seed)
        window.add(grid)

        def close() -> None:
            self._window = None
            live.close()
            window.destroy()

        def submit() -> None:
            if live.waiting_for_expansion(entry.get_text()):
                window.error_bell()
                return
            words = live.choice_words()
            choice = _choice(
                live.prompt(entry.get_text()),
                style.get_active_text() or NO_STYLE,
                action.get_active_text() or "",
                seed if offer.live is not None or words is not None else None,
                words,
            )
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
        live.connect(entry, style, action)
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


class _GtkLive:
    """What the box shows beside and under the text (GTK's thread only): the live preview with a line under it,
    the expansion toggle and the editable expansion, and the debounce timer that asks for both."""

    def __init__(self, offer: Offer, grid: Any, seed: int) -> None:
        from gi.repository import Gtk

        self.offer, self.live, self.seed = offer, offer.live, seed
        self.timer: int | None = None
        self.closed = False
        self.asked = 0
        """Counts the expansions asked for: only the newest one's answer is shown."""
        self.filling = False
        self.expanded_words: str | None = None
        """The words the expansion shown was grown from (None: no expansion shown)."""
        self.toggle = Gtk.CheckButton(label="_Expand the prompt", use_underline=True, active=offer.expand_on)
        self.toggle.set_can_focus(False)  # Alt+E toggles it and the typing stays in the prompt
        self.expansion = Gtk.Entry(placeholder_text="The expansion shows here; edit it as you like")
        self.expansion.set_width_chars(48)
        if offer.expand is not None:
            grid.attach(self.toggle, 1, 3, 1, 1)
            label = Gtk.Label(label="E_xpanded", use_underline=True, xalign=0)
            label.set_mnemonic_widget(self.expansion)
            grid.attach(label, 0, 4, 1, 1)
            grid.attach(self.expansion, 1, 4, 1, 1)
        self.image = Gtk.Image()
        self.line = Gtk.Label(label=offer.live_note or "The preview shows once you pause typing.", xalign=0)
        self.line.set_line_wrap(True)
        self.line.set_max_width_chars(36)
        if self.live is not None or offer.live_note:
            self.image.set_size_request(PREVIEW_BOX, PREVIEW_BOX)
            grid.attach(self.image, 2, 0, 1, 5)
            grid.attach(self.line, 2, 5, 1, 1)
        if self.live is not None:
            self.live.watch(self._from_engine(self._show), self._from_engine(self._problem))

    @property
    def expanding(self) -> bool:
        return self.offer.expand is not None and self.toggle.get_active()

    def connect(self, entry: Any, style: Any, action: Any) -> None:
        """Follow the words, the style, the action, the toggle and the expansion."""

        def wish_now() -> Any:
            from dreamtray.desktop.live_preview import Wish

            chosen = style.get_active_text() or NO_STYLE
            chosen = "" if chosen == NO_STYLE else chosen
            return Wish(self.prompt(entry.get_text()), chosen, action.get_active_text() or "")

        def words_changed(*_: Any) -> None:
            self.expanded_words = None
            self._changed(lambda: self._rested(entry.get_text(), wish_now))

        def expansion_edited(*_: Any) -> None:
            if not self.filling:
                self._changed(lambda: self._ask(wish_now()))

        def choice_changed(*_: Any) -> None:
            if self.expanded_words is None:
                words_changed()
            else:  # the expansion shown still stands: only the preview follows
                self._changed(lambda: self._ask(wish_now()))

        entry.connect("changed", words_changed)
        self.toggle.connect("toggled", words_changed)
        for widget in (style, action):
            widget.connect("changed", choice_changed)
        self.expansion.connect("changed", expansion_edited)

    def prompt(self, words: str) -> str:
        """The prompt as the box stands: the (edited) expansion when expanding and one is shown, else the words."""
        grown = self.expansion.get_text().strip()
        return grown if self.expanding and self.expanded_words is not None and grown else words.strip()

    def choice_words(self) -> str | None:
        """The user's own words when the prompt is an expansion of them (for the metadata), else None."""
        return self.expanded_words if self.expanding and self.expansion.get_text().strip() else None

    def waiting_for_expansion(self, words: str) -> bool:
        """Whether Enter must wait: expanding is on and the expansion of these words is not shown yet."""
        if self.expanding and words.strip() and self.expanded_words is None:
            self.line.set_text("Expanding the prompt… press Enter once it shows.")
            return True
        return False

    def _changed(self, rested: Callable[[], None]) -> None:
        from gi.repository import GLib

        from dreamtray.desktop.live_preview import DEBOUNCE_SECONDS

        if self.live is not None:
            self.live.typing()
        if self.timer is not None:
            GLib.source_remove(self.timer)

        def fire() -> bool:
            self.timer = None
            rested()
            return False

        self.timer = GLib.timeout_add(round(DEBOUNCE_SECONDS * 1000), fire)

    def _rested(self, words: str, wish_now: Callable[[], Any]) -> None:
        if not words.strip():
            return
        if not self.expanding:
            self._ask(wish_now())
            return
        self.asked += 1
        asked, expand = self.asked, self.offer.expand
        assert expand is not None
        self.line.set_text("Expanding the prompt…")

        def run() -> None:
            try:
                grown, problem = expand(words.strip(), self.seed), ""
            except Exception as exc:
                log.warning("the prompt could not be expanded", exc_info=True)
                grown, problem = "", f"The prompt could not be expanded: {exc}"
            self._from_engine(lambda _: self._expanded(asked, words.strip(), grown, problem, wish_now))(None)

        threading.Thread(target=run, name="dreamtray-expansion", daemon=True).start()

    def _expanded(self, asked: int, words: str, grown: str, problem: str, wish_now: Callable[[], Any]) -> None:
        if asked != self.asked or not self.expanding:
            return
        if problem:
            self.line.set_text(problem)
            return
        self.filling = True
        self.expansion.set_text(grown)
        self.filling = False
        self.expanded_words = words
        self.line.set_text("Expanded: edit it, or press Enter.")
        self._ask(wish_now())

    def _ask(self, wish: Any) -> None:
        if self.live is not None and wish.prompt:
            self.line.set_text("Making the preview…")
            self.live.ask(wish)

    def close(self) -> None:
        from gi.repository import GLib

        self.closed = True
        if self.timer is not None:
            GLib.source_remove(self.timer)
            self.timer = None
        if self.live is not None:
            self.live.close()

    def _from_engine(self, show: Callable[[Any], None]) -> Callable[[Any], None]:
        """`show` run on GTK's thread, for callbacks that come from the engine's threads."""
        from gi.repository import GLib

        def later(value: Any) -> None:
            def run() -> bool:
                if not self.closed:
                    show(value)
                return False

            GLib.idle_add(run)

        return later

    def _show(self, preview: Preview) -> None:
        from gi.repository import GdkPixbuf

        loader = GdkPixbuf.PixbufLoader.new_with_type("png")
        loader.write(preview.png)
        loader.close()
        self.image.set_from_pixbuf(loader.get_pixbuf())
        self.image.set_tooltip_text(preview.prompt)
        self.line.set_text(f"Preview, seed {preview.seed}: Enter makes it in full.")

    def _problem(self, message: str) -> None:
        self.line.set_text(message)


def _gtk_choices(gtk: Any, names: Sequence[str], current: str) -> Any:
    box = gtk.ComboBoxText()
    for name in names:
        box.append_text(name)
    box.set_active(list(names).index(current) if current in names else 0)
    return box


class TkPromptBox:
    """The box in a Tk window on a thread of its own (Tk is used from that thread alone); one at a time."""

    shows_previews = False

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
