"""Desktop notifications that never hold up, or raise into, the caller.

`notify` only hands the notification to a thread of its own and returns at once: a notification service that
hangs (as it starts, on each call) or vanishes can delay only other notifications, never an image, a hotkey or
`dreamtray trigger`. That thread waits at most SEND_TIMEOUT seconds for each way of showing one, and holds at
most QUEUE_LIMIT waiting notifications: more are dropped (and logged) while the service does not keep up.

desktop-notifier speaks to the platform's notification service (D-Bus on Linux, the Notification Center on
macOS, WinRT toasts on Windows) and shows the image as an attachment where the desktop supports it. When it
cannot deliver, `notify-send` is tried. Failures are logged; `problem()` says why none could be shown.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

APP_NAME = "dreamtray"
SEND_TIMEOUT = 5.0
"""Seconds to wait for the notification service to take one notification, for each way of sending it."""
QUEUE_LIMIT = 8
"""Notifications waiting for the service at most; later ones are dropped until it catches up."""
Urgency = Literal["low", "normal", "critical"]


@dataclass(frozen=True)
class _Note:
    title: str
    body: str
    image: Path | None
    urgency: Urgency


class _NoAnswer(Exception):
    """The notification service did not answer in time."""


_pending: queue.Queue[_Note] = queue.Queue(QUEUE_LIMIT)
_start_lock = threading.Lock()
_thread: threading.Thread | None = None
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_notifier: Any = None
_problem: str | None = None


def notify(title: str, body: str = "", image_path: Path | str | None = None, urgency: Urgency = "normal") -> bool:
    """Queue a notification for the desktop and return at once; False when it was dropped (too many wait).

    Never raises and never waits for the notification service.
    """
    try:
        _start_thread()
        _pending.put_nowait(_Note(title, body, Path(image_path) if image_path else None, urgency))
    except queue.Full:
        log.warning("notification dropped (the notification service is not keeping up): %s: %s", title, body)
        return False
    except Exception:  # no thread can start (the process is ending): the log still has it
        log.warning("%s: %s", title, body, exc_info=True)
        return False
    return True


def deliver(title: str, body: str = "", image: Path | None = None, urgency: Urgency = "normal") -> bool:
    """Show a notification now, on this thread; True when one was handed to the desktop. Never raises.

    Waits at most SEND_TIMEOUT for each way of sending it. When none can be shown, the first time says so in
    the log (and `problem()` tells why, for the tray to show); later failures only log the message itself.
    """
    global _problem
    if image is not None and not image.is_file():
        image = None
    reasons = []
    for send in (_send_with_desktop_notifier, _send_with_notify_send):
        name = send.__name__.removeprefix("_send_with_")
        try:
            if send(title, body, image, urgency):
                _problem = None
                return True
            reasons.append(f"{name}: not delivered")
        except _NoAnswer as exc:
            reasons.append(f"{name}: {exc}")
        except Exception as exc:
            log.debug("could not show a notification with %s", name, exc_info=True)
            reasons.append(f"{name}: {type(exc).__name__}: {exc}")
    if _problem is None:
        _problem = "Notifications cannot be shown here (" + "; ".join(reasons) + ")."
        log.warning("%s Messages go to this log instead.", _problem)
    log.warning("%s: %s", title, body)
    return False


def problem() -> str | None:
    """Why the last notification could not be shown; None when it was (or none was tried yet)."""
    return _problem


def _start_thread() -> None:
    global _thread
    with _start_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_deliver_queued, name="dreamtray: notifications", daemon=True)
            _thread.start()


def _deliver_queued() -> None:
    while True:
        note = _pending.get()
        try:
            deliver(note.title, note.body, note.image, note.urgency)
        except BaseException:  # deliver never raises; this thread must not die of anything else either
            log.warning("could not show a notification", exc_info=True)
        finally:
            _pending.task_done()


def _send_with_desktop_notifier(title: str, body: str, image: Path | None, urgency: Urgency) -> bool:
    from desktop_notifier import Attachment
    from desktop_notifier import Urgency as Level

    global _loop, _notifier
    with _lock:  # one event loop for the notifier: one send at a time
        if _loop is None:
            _loop = asyncio.new_event_loop()
            # A bus connection that breaks between sends (the session ends) is only worth a debug line.
            _loop.set_exception_handler(lambda loop, context: log.debug("notifier: %s", context.get("message")))
        notifier = _get_notifier()
        dispatched = threading.Event()
        sent = notifier.send(
            title,
            body,
            urgency=Level(urgency),
            attachment=Attachment(path=image) if image else None,
            on_dispatched=dispatched.set,
        )
        try:
            _loop.run_until_complete(asyncio.wait_for(sent, SEND_TIMEOUT))
        except TimeoutError:
            _notifier = None  # its connection may be stuck half-way: the next send starts afresh
            _loop.run_until_complete(_disconnect(notifier))
            raise _NoAnswer(f"the notification service did not answer within {SEND_TIMEOUT:.0f} s") from None
    return dispatched.is_set()


async def _disconnect(notifier: Any) -> None:
    """Close the D-Bus connection of a notifier given up on (where the back end has one)."""
    bus = getattr(getattr(notifier, "_backend", None), "bus", None)
    if bus is not None:
        try:
            bus.disconnect()
        except Exception:
            log.debug("could not close the notifier's bus connection", exc_info=True)


def _get_notifier() -> Any:
    global _notifier
    if _notifier is None:
        from desktop_notifier import DesktopNotifier

        # It logs every failed send with a traceback; `deliver` says once, in words, that none can be shown.
        logging.getLogger("desktop_notifier").setLevel(logging.ERROR)
        _notifier = DesktopNotifier(app_name=APP_NAME)
    return _notifier


def _send_with_notify_send(title: str, body: str, image: Path | None, urgency: Urgency) -> bool:
    program = shutil.which("notify-send")
    if program is None:
        return False
    args = [program, "--app-name", APP_NAME, "--urgency", urgency]
    if image is not None:
        args += ["--hint", f"string:image-path:{image.resolve().as_uri()}"]
    args += ["--", title, body]
    try:
        return subprocess.run(args, capture_output=True, timeout=SEND_TIMEOUT).returncode == 0
    except subprocess.TimeoutExpired:
        raise _NoAnswer(f"the notification service did not answer within {SEND_TIMEOUT:.0f} s") from None
