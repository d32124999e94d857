"""The tray host behind `dreamtray run`: a pystray icon with its menu, global hotkeys, and the control channel.

It imports no torch: the icon shows at once and the engine service starts in the background, living as long
as the tray (quitting stops it). Every callback, from the menu, a hotkey, `dreamtray trigger` or a plugin, is
guarded: a failure becomes a notification, never the end of the tray.
"""

from __future__ import annotations

import base64
import functools
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dreamtray import route
from dreamtray.desktop import icon_files
from dreamtray.desktop.hotkeys import WAYLAND_ADVICE, HotkeyListener, bindings_from_config, is_wayland
from dreamtray.desktop.job_queue import Entry, JobQueue, NoSuchJob, State
from dreamtray.desktop.menu import describe_job
from dreamtray.desktop.merged import Merged, Post, PostLater, WorkThread, call_now
from dreamtray.desktop.notify import notify
from dreamtray.desktop.notify import problem as notify_problem
from dreamtray.desktop.prompt_box import Choice, Offer, PromptBox, PromptBoxUnavailable, make_prompt_box
from dreamtray.desktop.prompt_history import load_history, remember
from dreamtray.engine.download_progress import percent, progress_line
from dreamtray.engine.job_record import FINISHED
from dreamtray.route import Report, Task

if TYPE_CHECKING:
    from pathlib import Path

    from PIL.Image import Image

    from dreamtray.app import App
    from dreamtray.desktop.live_preview import LivePreview
    from dreamtray.engine.client import Job
    from dreamtray.request import Request, Subject

log = logging.getLogger("dreamtray.desktop.tray")
NAME = "dreamtray"
MORE_LIKE_THIS = 3
"""Images that "More like this" makes from the newest one."""
HEAVY_MODULES = ("torch", "diffusers", "transformers", "openvino", "nncf", "fastapi", "starlette", "uvicorn")
"""What the tray process must never load: they belong to the engine's own process."""
AGAIN = "-again"
"""`dreamtray trigger ACTION-again`: a new image from the last prompt for ACTION (wallpaper-again, ...)."""
REDRAW_GAP = 0.2
"""Seconds between two drawings of the busy icon (progress, previews): each takes CPU from the image being made,
the tray's and the X server's and the panel's; a new state (busy, idle, error) is drawn at once."""
GTK_BACKENDS = ("pystray._gtk", "pystray._appindicator")
"""pystray's backends whose icon runs in a GTK main loop (on the main thread)."""
SNI_DESKTOPS = {"gnome", "unity", "ubuntu", "kde", "budgie", "pantheon"}
"""Desktops that show only StatusNotifier (AppIndicator) icons, or prefer them to the old XEmbed tray."""


class TrayUnavailable(RuntimeError):
    """No tray icon can be shown here (no desktop, or no backend); the message says what would help."""


def choose_backend(environ: dict[str, str] | Any = os.environ) -> None:
    """Pick pystray's backend before it is imported: a user's PYSTRAY_BACKEND wins; on Linux, AppIndicator
    on desktops that only show those, else GTK (a real menu) where PyGObject has GTK 3; else pystray's choice."""
    if environ.get("PYSTRAY_BACKEND") or not sys.platform.startswith(("linux", "freebsd")):
        return
    try:
        import gi

        gi.require_version("Gtk", "3.0")
    except (ImportError, ValueError):
        return
    desktops = {part.strip().lower() for part in environ.get("XDG_CURRENT_DESKTOP", "").split(":")}
    if desktops & SNI_DESKTOPS or environ.get("XDG_SESSION_TYPE") == "wayland":
        try:
            gi.require_version("AyatanaAppIndicator3", "0.1")
            environ["PYSTRAY_BACKEND"] = "appindicator"
            return
        except ValueError:
            pass
    environ["PYSTRAY_BACKEND"] = "gtk"


@functools.cache
def _state_icon(state: str) -> Image:
    from PIL import Image

    with Image.open(icon_files.tray_png(state, 64)) as image:
        return image.convert("RGBA")


def tray_image(state: str, percent: int | None = None, preview: bytes | None = None) -> Image:
    """The tray picture for `state`; while busy, a bar along the bottom shows the progress, over the image
    as it forms when the engine sent a `preview` (PNG bytes)."""
    from PIL import Image, ImageDraw, ImageOps

    image = _state_icon(state).copy()
    if state == "busy" and preview is not None:
        with Image.open(io.BytesIO(preview)) as forming:
            image = ImageOps.fit(forming.convert("RGBA"), (64, 64))
    if state == "busy" and percent is not None:
        draw = ImageDraw.Draw(image)
        draw.rectangle((4, 56, 59, 62), fill=(255, 255, 255, 230), outline=(40, 40, 40, 255))
        if percent > 0:
            draw.rectangle((5, 57, 5 + round(53 * min(percent, 100) / 100), 61), fill=(46, 160, 67, 255))
    return image


class TrayHost:
    """The running tray: state shown on the icon, the job queue, hotkeys, and the commands it answers."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.state = "idle"
        self.percent: int | None = None
        self.detail = ""
        self.preview: str | None = None
        """The image as it forms (base64 PNG), from the engine's latest preview event; shown on the busy icon."""
        self.previews = 0
        self.download_line = ""
        """What a running model download says ('downloading sd-turbo: 45% of 2.1 GB, 35.2 MB/s'), else ''."""
        self._menu_refreshed = 0.0
        self.paused = False
        self.icon: Any = None
        self.hotkeys: HotkeyListener | None = None
        self.queue: JobQueue[Task] = JobQueue(self._run, app.config.queue_length, on_change=self._queue_changed)
        self.history = load_history()
        self._prompt_box: PromptBox | None = None
        self.live: LivePreview | None = None
        """The live preview of the prompt box opened last (its jobs and the preview shown), for `status`."""
        self._told_full = False
        self._menu_shows: object = None
        self._closing = threading.Event()
        self.problems: list[str] = []
        """Desktop pieces found missing (a tray host...), each said once; `status` lists them."""
        self.backend = ""
        """The pystray backend's module (pystray._gtk...), once the icon is made."""
        self.on_icon: Post = call_now
        """Where a change to the icon runs: pystray's GTK icons hand their changes to GTK's loop themselves; the
        others' run on one thread of the tray's (see WorkThread)."""
        self._shown = threading.Lock()
        self._redraw = Merged(self._draw, min_gap=REDRAW_GAP)
        self._menu_update = Merged(self._update_menu)

    @property
    def last_prompt(self) -> str | None:
        return self.history[0] if self.history else None

    # -- what the user asks for ---------------------------------------------------------------------

    def from_selection(
        self, action: str, origin: str = "hotkey", wait: bool = False, style: str | None = None
    ) -> dict[str, Any]:
        """Make an image from the selected text and hand it to `action`; with nothing selected, open the prompt
        box instead (unless a caller waits for the image, or the action refines the last image)."""
        from dreamtray.desktop.selection import NothingSelected, read_selection

        def prompt() -> str:
            try:
                selection = read_selection()
            except NothingSelected:
                if wait or action == route.REFINE_LAST:
                    raise
                raise _OpenPromptBox from None
            if selection.truncated:
                notify("The selection was cut", f"Only its first {len(selection.text)} characters are used.")
            return selection.text

        return self._offer(action, prompt, origin, wait, style)

    def generate(
        self,
        prompt: str,
        action: str | None = None,
        origin: str = "plugin",
        wait: bool = False,
        style: str | None = None,
        seed: int | None = None,
        expanded_from: str | None = None,
        subject: Subject | None = None,
    ) -> dict[str, Any]:
        """Make an image from `prompt` (for plugins, the prompt box and `dreamtray trigger --prompt`);
        `style` replaces the config's style names ('' for none); `seed` is the prompt box's (None: a fresh one);
        `expanded_from`, the user's words when `prompt` is the box's expansion of them; `action` None: the default
        action."""
        fields = (style, seed, expanded_from, subject)
        return self._offer(action or self.app.default_action, lambda: prompt, origin, wait, *fields)

    def open_prompt_box(self, action: str | None = None) -> dict[str, Any]:
        """Show the prompt box, `action` (else the default action) chosen in it."""
        try:
            if self._prompt_box is None:
                self._prompt_box = make_prompt_box()
        except PromptBoxUnavailable as exc:
            notify("No prompt box here", str(exc))
            return {"ok": False, "message": str(exc)}
        actions = sorted(self.app.plugins.actions())
        styles = [style.name for style in self.app.styles]
        current = self.app.config.style.strip()
        live, note = self._live_preview()
        newest = self.app.gallery.images()[:1]
        subject_of = newest[0][0] if newest else None  # the image "Same subject" names, and keeps at Enter
        offer = Offer(
            history=self.history,
            styles=styles if not current or current in styles else [current, *styles],
            style=current,
            actions=actions,
            action=action if action in actions else self.app.default_action,
            live=live,
            live_note=note,
            expand=self._expand,
            expand_on=self.app.config.expand_prompts,
            subject_note=_subject_note(subject_of),
        )
        self._prompt_box.open(offer, lambda choice: self._chosen(choice, subject_of))
        return {"ok": True, "message": "The prompt box is open."}

    def _live_preview(self) -> tuple[LivePreview | None, str]:
        """A live preview for the box about to open, or why there is none; the newest one is kept for `status`."""
        from dreamtray.desktop.live_preview import LivePreview, live_off_reason, preview_request

        note = live_off_reason(self.app)
        if note:
            return None, note
        self.live = LivePreview(
            lambda wish, seed: preview_request(self.app, wish, seed), self.app.engine, on_jobs=self.refresh_menu
        )
        return self.live, ""

    def _expand(self, words: str, seed: int) -> str:
        """The prompt box's expansion of `words` (on the box's thread): the local engine's text model."""
        from dreamtray.prompt_expansion import expand

        return expand(self.app, words, seed).expansion

    def _chosen(self, choice: Choice, subject_of: Path | None) -> None:
        """Enter in the prompt box (on the toolkit's thread): the image is made on a thread of its own, keeping the
        subject of `subject_of` (the newest image as the box opened) when "Same subject" is on."""

        def make() -> dict[str, Any]:
            subject = None
            if choice.same_subject and subject_of is not None:
                subject = _subject_of(subject_of)[1]
            return self.generate(
                choice.prompt,
                choice.action,
                "prompt box",
                style=choice.style,
                seed=choice.seed,
                expanded_from=choice.expanded_from,
                subject=subject,
            )

        self.in_background(make, "the prompt box's image")

    def again(self, action: str, origin: str = "menu", wait: bool = False) -> dict[str, Any]:
        """A new image (a new seed) from the last prompt, handed to `action`."""
        if not self.last_prompt:
            notify("No prompt yet", "Make an image from a selection first; then it can be made again from its text.")
            return {"ok": False, "message": "There is no last prompt yet: make an image from a selection first."}
        return self._offer(action, lambda: self.last_prompt or "", origin, wait)

    def more_like_this(self, count: int = MORE_LIKE_THIS) -> dict[str, Any]:
        """A small same-subject series from the newest gallery image: `count` new images (its next seeds) that keep
        its subject, each through the one route into the gallery (docs/style-packs.md, "Same subject")."""
        from dreamtray import generation
        from dreamtray.request import MAX_SEED

        newest = self.app.gallery.images()[:1]
        if not newest:
            notify("No image yet", "Make an image first; then more like it can be made.")
            return {"ok": False, "message": "There is no image in the gallery yet."}
        path = newest[0][0]
        last, subject = _subject_of(path)
        made = []
        for number in range(1, count + 1):
            seed = (last.seed + number) % (MAX_SEED + 1)
            request = last.model_copy(update={"seed": seed, "subject": subject, "count": 1, "preview_every": 0})
            made += generation.generate(self.app, request).paths
        notify("More like this", f"{len(made)} new images keep the subject of {path.name}.", image_path=made[-1])
        return {"ok": True, "images": [str(image) for image in made]}

    def _offer(
        self,
        action: str,
        prompt: Callable[[], str],
        origin: str,
        wait: bool,
        style: str | None = None,
        seed: int | None = None,
        expanded_from: str | None = None,
        subject: Subject | None = None,
    ) -> dict[str, Any]:
        if self._closing.is_set():
            return {"ok": False, "message": "dreamtray is quitting."}
        try:
            chosen = route.chosen_action(self.app, action)
        except Exception as exc:
            return {"ok": False, "message": str(exc)}
        entry = self.queue.reserve()
        if entry is None:
            return self._dropped(action, origin)
        try:
            text = prompt()
            task = route.Task(action, text, origin, chosen, style, seed, expanded_from, subject)
        except _OpenPromptBox:
            self.queue.release(entry)
            return self.open_prompt_box(action)
        except Exception as exc:
            self.queue.release(entry)
            title, body = describe(exc)
            notify(title, body, urgency="normal")
            return {"ok": False, "message": f"{title}: {body}"}
        self.queue.fill(entry, task)
        ahead = self.queue.ahead_of(entry)
        self.history = remember(text)  # once the job has its place: writing the file (fsync) must not hold it up
        if ahead:
            notify("Queued", f"#{entry.number} waits its turn behind {_images(ahead)}.", urgency="low")
        placed = "waiting" if ahead else "started"
        if wait:
            task.done.wait()
            reply = task.report.as_reply() if task.report else {"ok": False, "message": "dreamtray quit first."}
            return {"placed": placed, "number": entry.number, **reply}
        message = f"#{entry.number} waits behind {_images(ahead)}." if ahead else f"#{entry.number} started."
        return {"ok": True, "placed": placed, "number": entry.number, "message": message}

    def _dropped(self, action: str, origin: str) -> dict[str, Any]:
        """The queue is full: the request is dropped, the user told once until a place frees, the log every time."""
        log.info("the queue is full: a %s request (%s) was dropped", action, origin)
        message = (
            f"The queue is full ({_images(self.queue.capacity)}): this request was dropped. "
            "Cancel one from the menu's Queue, or wait until one is done."
        )
        if not self._told_full:
            self._told_full = True
            notify("The queue is full", message, urgency="normal")
        return {"ok": False, "placed": "dropped", "message": message}

    def cancel(self, number: int) -> dict[str, Any]:
        """Cancel image `number`: a waiting one leaves the queue, the running one's engine job is stopped."""
        task = next((job.item for job in self.queue.entries() if job.number == number), None)
        try:
            state = self.queue.cancel(number)
        except NoSuchJob as exc:
            return {"ok": False, "message": str(exc)}
        if state is State.RUNNING:
            return {"ok": True, "message": f"Cancelling #{number}; the image being made stops."}
        if task is not None:
            task.report = Report(False, "The image was cancelled", f"#{number} left the queue before it started.")
            task.done.set()
            tell(task.report)
        return {"ok": True, "message": f"Cancelled #{number}; it had not started."}

    def running_preview(self) -> str | None:
        """The prompt of the prompt box's preview that the engine makes or holds now, if any."""
        preview = self.live.running() if self.live else None
        return preview["prompt"] if preview else None

    def queue_reply(self) -> dict[str, Any]:
        jobs = self.queue.entries()
        preview = self.live.running() if self.live else None
        lines = [describe_job(job) for job in jobs] or ([] if preview else ["Nothing is being made or waiting."])
        if preview:
            lines.append(f"live preview (prompt box): {preview['prompt']}")
        return {
            "ok": True,
            "message": "\n".join(lines),
            "queue_length": self.queue.capacity,
            "preview": preview,
            "jobs": [
                {
                    "number": job.number,
                    "state": job.state.value,
                    "action": job.item.action,
                    "prompt": job.item.prompt,
                    "origin": job.item.origin,
                    "percent": job.percent,
                    "cancelled": job.cancelled,
                }
                for job in jobs
            ],
        }

    def unload(self) -> dict[str, Any]:
        if self.app.config.engine.backend == "local" and self.app.local_engine.running() is None:
            return {"ok": True, "message": "The engine is not running; nothing to unload."}
        self.app.engine.unload()
        notify("Model unloaded", "Its memory is free; the next image loads it again.", urgency="low")
        return {"ok": True, "message": "Model unloaded; its memory is free."}

    # -- the job thread -------------------------------------------------------------------------------

    def _run(self, entry: Entry[Task]) -> None:
        task = entry.item
        assert task is not None
        self.preview, self.previews = None, 0
        self._show("busy", 0, "starting")
        task.mark("started")

        def on_job(job: Job) -> None:
            task.mark("submitted")
            self.queue.attach(entry, job.cancel)

        def on_event(event: dict[str, Any]) -> None:
            if event.get("kind") in FINISHED:
                task.mark("generated")
            elif event.get("kind") == "step" and event.get("total"):
                self.queue.progress(entry, round(100 * event["step"] / event["total"]))
            self._on_event(event)

        report = route.run_task(self.app, task, on_event=on_event, on_job=on_job)
        task.mark("ended")
        log.info("%s job (%s) %s: %s", task.action, task.origin, "done" if report.ok else "failed", task.timings())
        if self.download_line:
            self._set_download_line("")
        task.report = report
        if report.ok:
            self._show("idle", None, f"last image: {report.image.name}" if report.image else "")
        else:
            self._show("error", None, report.title)
        tell(report)
        task.done.set()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "preview":
            self.previews += 1
            self.preview = event["png"]
            self._show("busy", self.percent, self.detail)
        elif kind == "step" and event.get("total"):
            percent = round(100 * event["step"] / event["total"])
            if percent != self.percent:
                self._show("busy", percent, f"{percent}%")
        elif kind == "download":
            self._on_download(event)
        elif kind == "loading" and event.get("message"):
            self._show("busy", self.percent, str(event["message"]))

    def _on_download(self, event: dict[str, Any]) -> None:
        """A model download: a notification at its start and end, its progress in the tooltip and the menu."""
        stage = event.get("stage")
        if stage == "start":
            notify("Downloading a model", f"{event.get('message', '')}\nThe tray menu can cancel it.")
        if stage == "done":
            notify("Model downloaded", str(event.get("message", "")), urgency="low")
            self._set_download_line("")
            self._show("busy", None, "loading the model")
            return
        line = progress_line(event)
        if line != self.download_line:
            self._set_download_line(line, force=stage == "start")
            self._show("busy", percent(event), line)

    def _set_download_line(self, line: str, force: bool = True) -> None:
        """Show `line` in the menu (refreshed at most once a second, but always when it appears or goes)."""
        appears_or_goes = bool(line) != bool(self.download_line)
        self.download_line = line
        if force or appears_or_goes or time.monotonic() - self._menu_refreshed >= 1.0:
            self._menu_refreshed = time.monotonic()
            self.refresh_menu()

    def cancel_download(self) -> dict[str, Any]:
        """Cancel the image whose model is downloading; the bytes fetched so far stay for the next try."""
        running = [job.number for job in self.queue.entries() if job.state is State.RUNNING]
        if not (running and self.download_line):
            return {"ok": False, "message": "No model is downloading."}
        return self.cancel(running[0])

    # -- the icon ---------------------------------------------------------------------------------------

    @property
    def tooltip(self) -> str:
        words = {"idle": "ready", "busy": "making an image", "error": "something went wrong"}[self.state]
        percent = f" {self.percent}%" if self.state == "busy" and self.percent is not None else ""
        detail = f" ({self.detail})" if self.detail and self.detail != f"{self.percent}%" else ""
        paused = ", hotkeys paused" if self.paused else ""
        silent = ", notifications unavailable (see the log)" if notify_problem() else ""
        return f"{NAME}: {words}{percent}{detail}{paused}{silent}"

    def check_tray_host(self) -> None:
        """Say once, in the log and as a notification, when the icon has nowhere to show."""
        from dreamtray.desktop.tray_presence import NO_TRAY_ADVICE, tray_host_problem

        problem = tray_host_problem(os.environ.get("PYSTRAY_BACKEND"))
        if problem is None:
            return
        self.problems.append(problem)
        log.warning("%s %s", problem, NO_TRAY_ADVICE)
        notify("The dreamtray icon has nowhere to show", f"{problem} {NO_TRAY_ADVICE}")

    def _show(self, state: str, percent: int | None, detail: str) -> None:
        """Show `state` on the icon and in its tooltip. The caller (often the job thread) only asks: the icon is
        drawn on the toolkit's thread, once for any number of asks meanwhile (see Merged); a new state at once,
        progress and previews at most every REDRAW_GAP seconds."""
        with self._shown:
            new_state = state != self.state
            self.state, self.percent, self.detail = state, percent, detail
        if self.icon is not None:
            self._redraw(urgent=new_state)

    def _draw(self) -> None:
        """Draw the icon and its tooltip as they stand now."""
        with self._shown:
            state, percent, tooltip = self.state, self.percent, self.tooltip
            preview = self.preview if state == "busy" else None
        try:
            self.icon.icon = tray_image(state, percent, base64.b64decode(preview) if preview else None)
            self._set_tooltip(tooltip)
        except Exception:
            log.exception("could not update the tray icon")

    def _set_tooltip(self, text: str) -> None:
        self.icon.title = text
        status_icon = getattr(self.icon, "_status_icon", None)  # pystray's gtk backend sets only the title
        if status_icon is not None:
            from gi.repository import GLib

            GLib.idle_add(status_icon.set_tooltip_text, text)

    def _queue_changed(self) -> None:
        """Show the queue's change in the menu: at once for a job added, started, ended or cancelled, and for
        progress in steps of ten percent (GTK rebuilds the whole menu each time)."""
        jobs = self.queue.entries()
        if len(jobs) < self.queue.capacity:
            self._told_full = False
        shows = [
            (job.number, job.state, job.cancelled, None if job.percent is None else job.percent // 10) for job in jobs
        ]
        if shows != self._menu_shows:
            self._menu_shows = shows
            self.refresh_menu()

    def refresh_menu(self) -> None:
        """Show the menu's changes (on the toolkit's thread, merged like the icon's; pystray's GTK icon builds
        the menu only as it opens, see `_icon_class`)."""
        if self.icon is not None:
            self._menu_update()

    def on_toolkit_thread(self, post: Post, post_later: PostLater) -> None:
        """Draw the icon and update the menu through `post` (GLib.idle_add: on GTK's main loop) rather than
        on the thread that asks for it; `post_later(seconds, work)` waits out the icon's REDRAW_GAP."""
        self._redraw.post = self._menu_update.post = post
        self._redraw.post_later = post_later

    def _update_menu(self) -> None:
        try:
            self.icon.update_menu()
        except Exception:
            log.exception("could not update the tray menu")

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start_hotkeys(self) -> None:
        if is_wayland():
            log.warning(WAYLAND_ADVICE)
            notify("No global hotkeys on Wayland", WAYLAND_ADVICE)
            return
        bindings = bindings_from_config(self.app.hotkeys, set(self.app.plugins.actions()))
        for problem in bindings.problems:
            log.warning(problem)
        if bindings.problems:
            notify("Some hotkeys are off", "\n".join(bindings.problems))
        self.hotkeys = HotkeyListener(bindings.keys, self.press)
        if not self.paused:
            self.hotkeys.start()

    def press(self, action: str) -> None:
        """A hotkey was pressed (pynput's thread): take the selection on a thread of its own."""
        if self.paused or self._closing.is_set():
            return
        self.in_background(lambda: self.from_selection(action, "hotkey"), f"the {action} hotkey")

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if self.hotkeys is not None:
            self.hotkeys.stop() if paused else self.hotkeys.start()
        self._show(self.state, self.percent, self.detail)
        self.refresh_menu()

    def start_engine(self) -> None:
        """Start the local engine service in the background, so the first image does not wait for it."""

        def start() -> None:
            if self.app.config.engine.backend == "local":
                self.app.local_engine.client()

        self.in_background(start, "starting the engine")

    def in_background(self, work: Callable[[], Any], what: str) -> None:
        threading.Thread(target=self.guarded(work, what), name=f"dreamtray: {what}", daemon=True).start()

    def guarded(self, work: Callable[[], Any], what: str) -> Callable[[], None]:
        """`work` wrapped so that a failure is logged and shown, never raised into the tray."""

        def run() -> None:
            try:
                work()
            except Exception as exc:
                title, body = describe(exc)
                log.warning("%s failed: %s: %s", what, title, body)
                self._show("error", None, title)
                notify(f"{title} ({what})", body, urgency="critical")

        return run

    def quit(self) -> None:
        """Stop the icon; `close` then stops everything else on the main thread."""
        self._closing.set()
        if self.icon is not None:
            self.icon.stop()  # at once, on the thread that asks: the icon's thread may wait on the icon's loop

    def close(self) -> None:
        """Stop hotkeys, the running job, the job thread and the engine this tray started."""
        self._closing.set()
        if self.live is not None:
            self.live.close()
        if self.hotkeys is not None:
            self.hotkeys.stop()
        for job in self.queue.entries():
            if job.state is State.RUNNING:
                self.queue.cancel(job.number)
        for left in self.queue.close():
            if left.item is not None:
                left.item.report = Report(False, "dreamtray quit first", "The image had not started.")
                left.item.done.set()
        if self.app.config.engine.backend == "local":
            try:
                self.app.local_engine.stop()
            except Exception:
                log.warning("could not stop the engine", exc_info=True)
            self.app.local_engine.close()

    # -- the control channel (`dreamtray trigger`) -------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        command = str(message.get("action", ""))
        wait = bool(message.get("wait"))
        if command == "status":
            return {"ok": True, **self.status()}
        if command == "quit":
            threading.Thread(target=self.quit, daemon=True).start()
            return {"ok": True, "message": "dreamtray is quitting."}
        if command == "unload":
            return self.unload()
        if command in ("pause", "resume"):
            self.set_paused(command == "pause")
            return {"ok": True, "message": "Hotkeys paused." if self.paused else "Hotkeys on."}
        if command.endswith(AGAIN):
            return self.again(command.removesuffix(AGAIN), "trigger", wait)
        if command == "queue":
            return self.queue_reply()
        if command == "cancel":
            number = message.get("number")
            if not isinstance(number, int):
                return {"ok": False, "message": "cancel needs the number of an image in the queue."}
            return self.cancel(number)
        if command == "prompt":
            return self.open_prompt_box()
        if command == "menu":
            return self._menu_reply(message.get("path") or [])
        if not command:
            return {"ok": False, "message": "No action given."}
        style = message.get("style") if isinstance(message.get("style"), str) else None
        if isinstance(message.get("prompt"), str):
            return self.generate(message["prompt"], command, "trigger", wait, style)
        return self.from_selection(command, "trigger", wait, style)

    def _menu_reply(self, path: list[Any]) -> dict[str, Any]:
        """`trigger menu`: the menu's items as shown now, or the item that `path` leads to, picked."""
        from dreamtray.desktop.menu import describe_menu, pick

        if self.icon is None or not self.icon.menu:
            return {"ok": False, "message": "The menu is not ready yet."}
        if path:
            return pick(self.icon.menu, [str(label) for label in path], self.icon)
        return {"ok": True, "message": "\n".join(describe_menu(self.icon.menu))}

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "state": self.state,
            "percent": self.percent,
            "tooltip": self.tooltip,
            "pending": self.queue.pending,
            "queue_length": self.queue.capacity,
            "paused": self.paused,
            "hotkeys": dict(self.hotkeys.keys) if self.hotkeys else {},
            "hotkeys_listening": bool(self.hotkeys and self.hotkeys.running),
            "backend": self.backend or None,
            "visible": bool(self.icon is not None and self.icon.visible),
            "torch_imported": "torch" in sys.modules,
            "heavy_modules": sorted(name for name in HEAVY_MODULES if name in sys.modules),
            "last_prompt": self.last_prompt,
            "previews": self.previews,
            "live_preview": self.live.state() if self.live else None,
            "problems": [*self.problems, *filter(None, [notify_problem()])],
        }


def describe(exc: BaseException) -> tuple[str, str]:
    """A title and a sentence for the user about `exc`, desktop failures included."""
    from dreamtray.desktop.selection import NothingSelected, SelectionError

    if isinstance(exc, NothingSelected):
        return "Nothing selected", str(exc)
    if isinstance(exc, SelectionError):
        return "The selection could not be read", str(exc)
    return route.describe_error(exc)


def tell(report: Report) -> None:
    notify(report.title, report.body, report.image, "normal" if report.ok else "critical")


class _OpenPromptBox(Exception):
    """Nothing is selected, and the prompt box should ask for the text instead."""


def _images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def run_tray(app: App) -> None:
    """Run the tray until Quit (or SIGTERM/SIGINT). Raises instance.AlreadyRunning when one runs already."""
    from dreamtray.desktop.control import ControlServer, SingleInstance

    lock = SingleInstance()
    lock.acquire()
    host = TrayHost(app)
    control = ControlServer(host.handle)
    try:
        choose_backend()
        try:
            import pystray
        except Exception as exc:  # pystray raises ImportError, or others from a half-working GTK
            raise TrayUnavailable(
                f"The tray icon cannot be shown here ({exc}). `dreamtray run` needs a desktop session "
                "(DISPLAY or WAYLAND_DISPLAY); without one, use `dreamtray generate`."
            ) from None

        from dreamtray.desktop.menu import build_menu

        _without_pystray_notifier()
        _name_the_program()
        host.icon = _icon_class(pystray.Icon)(NAME, tray_image("idle"), NAME)
        host.backend = pystray.Icon.__module__
        if host.backend in GTK_BACKENDS:
            from gi.repository import GLib

            host.on_toolkit_thread(GLib.idle_add, lambda seconds, work: GLib.timeout_add(round(1000 * seconds), work))
        else:
            from dreamtray.desktop import xlib_threads

            xlib_threads.install()  # python-xlib's own waits, shared by threads (pystray's and pynput's X11 parts)
            icon_thread = WorkThread("dreamtray: icon")
            host.on_toolkit_thread(icon_thread.post, icon_thread.post_later)
            host.on_icon = icon_thread.post
        control.start()
        _quit_on_signals(host)

        def setup(icon: Any) -> None:
            host.on_icon(lambda: setattr(icon, "visible", True))  # first: it docks before the menu's plugins load
            menu = build_menu(host)

            def dress() -> None:
                icon.menu = menu
                host._set_tooltip(host.tooltip)

            host.on_icon(dress)
            host.check_tray_host()
            _catch_signals_in_gtk(host)
            host.guarded(host.start_hotkeys, "starting the hotkeys")()
            host.start_engine()
            for problem in app.loaded_config.problems:
                log.warning(problem)
            if app.loaded_config.problems:
                notify("Some settings were not used", "\n".join(app.loaded_config.problems))

        host.icon.run(setup)
    finally:
        control.stop()
        host.close()
        lock.release()


def _icon_class(base: type) -> type:
    """pystray's icon class; on GTK, one that builds its menu as it opens rather than at every change.

    pystray's GTK icon rebuilds the whole GTK menu (every item, every submenu) each time `update_menu` is
    called, which the tray does when a job starts, moves on by ten percent and ends: CPU taken from the image
    being made, for a menu nobody sees. AppIndicator menus are shown by another process, so they stay built.
    """
    if base.__module__ != "pystray._gtk":
        return base

    class MenuOnOpen(base):  # type: ignore[misc, valid-type]
        _menu_stale = True

        def _update_menu(self) -> None:
            self._menu_stale = True

        def _on_status_icon_popup_menu(self, status_icon: Any, button: int, activate_time: int) -> None:
            if self._menu_stale:
                self._menu_stale = False
                self._menu_handle = self._create_menu(self.menu)
            super()._on_status_icon_popup_menu(status_icon, button, activate_time)

    return MenuOnOpen


class _NoNotifier:
    """Stands in for pystray's own D-Bus notifier, which dreamtray does not use."""

    def notify(self, title: str, message: str, icon: str) -> None:
        """dreamtray shows notifications itself (desktop.notify), where a missing service is told once."""

    def hide(self) -> None:
        """Nothing shown, nothing to hide."""


def _without_pystray_notifier() -> None:
    """pystray's GTK and AppIndicator icons open a D-Bus notifier as they start, and raise (ending the tray)
    when the session's notification service cannot start or the bus cannot be reached. dreamtray never uses
    that notifier, so the icon gets one that needs no service."""
    if os.environ.get("PYSTRAY_BACKEND") in ("gtk", "appindicator"):
        from pystray._util import notify_dbus

        notify_dbus.Notifier = _NoNotifier


def _name_the_program() -> None:
    """Let the tray and the window manager call the icon's window 'dreamtray' (GTK takes it from argv[0])."""
    if os.environ.get("PYSTRAY_BACKEND") in ("gtk", "appindicator"):
        from gi.repository import GLib

        GLib.set_prgname(NAME)
        GLib.set_application_name(NAME)


def _quit_on_signals(host: TrayHost) -> None:
    import signal

    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: host.quit())


def _catch_signals_in_gtk(host: TrayHost) -> None:
    """GTK's main loop runs no Python signal handler (and pystray resets SIGINT): let GLib catch them."""
    if getattr(host.icon, "_loop", None) is None or not hasattr(os, "getuid"):
        return
    import signal

    from gi.repository import GLib

    def on_signal() -> bool:
        host.quit()
        return GLib.SOURCE_REMOVE

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, number, on_signal)


def _subject_of(path: Path) -> tuple[Request, Subject]:
    """The request of the gallery image `path`, and the subject an image keeps to be like it (its own reference when
    it keeps one, else the image itself). MetadataError names a bad file."""
    from dreamtray.images.metadata import request_from_image
    from dreamtray.request import Subject

    last = request_from_image(path)
    kept = last.subject
    return last, kept if kept is not None and not kept.anchor else Subject(reference=last)


def _subject_note(path: Path | None) -> str:
    """What the prompt box's "Same subject" toggle keeps, and how; '' when there is no image to keep."""
    if path is None:
        return ""
    return (
        f"Keeps the subject of {path.name}. Method: auto (the engine picks shared attention on torch, "
        "init-image on the fast path; the image's metadata names the one used)."
    )
