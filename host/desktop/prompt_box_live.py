"""What the prompt box does beside the words, the same in GTK and Tk: the debounce timer, the expansion asked
for and shown, the live preview asked for and shown, and what Enter takes from them.

`BoxLive` holds the logic and runs on the toolkit's thread; the toolkit's box gives it a `Face` (its widgets,
its timers, and a way back onto its thread from the engine's threads).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dreamtray.desktop.live_preview import LivePreview, Preview, Wish

log = logging.getLogger("dreamtray.prompt_box")
WAITING = "The preview shows once you pause typing."


class Face(Protocol):
    """A toolkit's widgets and loop as `BoxLive` needs them (all called on the toolkit's thread but `later`)."""

    def words(self) -> str: ...
    def expansion(self) -> str: ...
    def set_expansion(self, text: str) -> None: ...
    def toggled(self) -> bool:
        """Whether the expansion toggle is on."""
        ...
    def style(self) -> str:
        """The style chosen ('' for none)."""
        ...
    def action(self) -> str: ...
    def same_subject(self) -> bool:
        """Whether "Same subject" is on."""
        ...
    def say(self, line: str) -> None: ...
    def show(self, png: bytes, tooltip: str) -> None: ...
    def after(self, seconds: float, call: Callable[[], None]) -> Any:
        """Call once after `seconds` on the toolkit's thread; returns a handle for `cancel`."""
        ...
    def cancel(self, handle: Any) -> None: ...
    def later(self, call: Callable[[], None]) -> None:
        """Call soon on the toolkit's thread (from any thread)."""
        ...


class BoxLive:
    """The live part of one opening of the box; `expand` (None: no expansion) grows words with the seed."""

    def __init__(
        self, face: Face, live: LivePreview | None, expand: Callable[[str, int], str] | None, seed: int
    ) -> None:
        self.face, self.live, self.expand, self.seed = face, live, expand, seed
        self.timer: Any = None
        self.closed = False
        self.asked = 0
        """Counts the expansions asked for: only the newest one's answer is shown."""
        self.filling = False
        self.expanded_words: str | None = None
        """The words the expansion shown was grown from (None: no expansion shown)."""
        if live is not None:
            live.watch(self._from_engine(self._show), self._from_engine(face.say))

    @property
    def expanding(self) -> bool:
        return self.expand is not None and self.face.toggled()

    # -- the box's events (toolkit thread) ----------------------------------------------------------------

    def words_changed(self) -> None:
        """The words or the expansion toggle changed: a new expansion (when expanding) and preview once they rest."""
        self.expanded_words = None
        self._changed(self._rested)

    def expansion_edited(self) -> None:
        if not self.filling:
            self._changed(lambda: self._ask(self._wish()))

    def choice_changed(self) -> None:
        """The style or action changed: the expansion shown still stands, only the preview follows."""
        if self.expanded_words is None:
            self.words_changed()
        else:
            self._changed(lambda: self._ask(self._wish()))

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.face.cancel(self.timer)
            self.timer = None
        if self.live is not None:
            self.live.close()

    # -- what Enter takes -----------------------------------------------------------------------------------

    def prompt(self) -> str:
        """The prompt as the box stands: the (edited) expansion when expanding and one is shown, else the words."""
        grown = self.face.expansion().strip()
        return grown if self.expanding and self.expanded_words is not None and grown else self.face.words().strip()

    def choice_words(self) -> str | None:
        """The user's own words when the prompt is an expansion of them (for the metadata), else None."""
        return self.expanded_words if self.expanding and self.face.expansion().strip() else None

    def waiting_for_expansion(self) -> bool:
        """Whether Enter must wait: expanding is on and the expansion of these words is not shown yet."""
        if self.expanding and self.face.words().strip() and self.expanded_words is None:
            self.face.say("Expanding the prompt… press Enter once it shows.")
            return True
        return False

    # -- inside ---------------------------------------------------------------------------------------------

    def _wish(self) -> Wish:
        from dreamtray.desktop.live_preview import Wish

        return Wish(self.prompt(), self.face.style(), self.face.action())

    def _changed(self, rested: Callable[[], None]) -> None:
        from dreamtray.desktop.live_preview import DEBOUNCE_SECONDS

        if self.live is not None:
            self.live.typing()
        if self.timer is not None:
            self.face.cancel(self.timer)

        def fire() -> None:
            self.timer = None
            rested()

        self.timer = self.face.after(DEBOUNCE_SECONDS, fire)

    def _rested(self) -> None:
        words = self.face.words().strip()
        if not words:
            return
        if not self.expanding:
            self._ask(self._wish())
            return
        self.asked += 1
        asked, expand = self.asked, self.expand
        assert expand is not None
        self.face.say("Expanding the prompt…")

        def run() -> None:
            try:
                grown, problem = expand(words, self.seed), ""
            except Exception as exc:
                log.warning("the prompt could not be expanded", exc_info=True)
                grown, problem = "", f"The prompt could not be expanded: {exc}"
            self._from_engine(lambda _: self._expanded(asked, words, grown, problem))(None)

        threading.Thread(target=run, name="dreamtray-expansion", daemon=True).start()

    def _expanded(self, asked: int, words: str, grown: str, problem: str) -> None:
        if asked != self.asked or not self.expanding:
            return
        if problem:
            self.face.say(problem)
            return
        self.filling = True
        self.face.set_expansion(grown)
        self.filling = False
        self.expanded_words = words
        self.face.say("Expanded: edit it, or press Enter.")
        self._ask(self._wish())

    def _ask(self, wish: Wish) -> None:
        if self.live is not None and wish.prompt:
            self.face.say("Making the preview…")
            self.live.ask(wish)

    def _from_engine(self, show: Callable[[Any], None]) -> Callable[[Any], None]:
        """`show` run on the toolkit's thread, for callbacks that come from the engine's threads."""

        def later(value: Any) -> None:
            self.face.later(lambda: None if self.closed else show(value))

        return later

    def _show(self, preview: Preview) -> None:
        self.face.show(preview.png, preview.prompt)
        self.face.say(f"Preview, seed {preview.seed}: Enter makes it in full.")
