"""Desktop notifications that never raise into the caller.

desktop-notifier speaks to the platform's notification service (D-Bus on Linux, the Notification Center on
macOS, WinRT toasts on Windows) and shows the image as an attachment where the desktop supports it. When it
cannot deliver, `notify-send` is tried. Failures are logged, and `notify` returns whether one was delivered.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

APP_NAME = "dreamtray"
Urgency = Literal["low", "normal", "critical"]

_lock = threading.Lock()
_notifier = None
_problem: str | None = None


def notify(title: str, body: str = "", image_path: Path | str | None = None, urgency: Urgency = "normal") -> bool:
    """Show a notification; True when one was handed to the desktop. Never raises.

    When none can be shown, the first time says so in the log (and `problem()` tells why, for the tray to
    show); later failures only log the message itself.
    """
    global _problem
    image = Path(image_path) if image_path else None
    if image is not None and not image.is_file():
        image = None
    reasons = []
    for send in (_send_with_desktop_notifier, _send_with_notify_send):
        try:
            if send(title, body, image, urgency):
                _problem = None
                return True
            reasons.append(f"{send.__name__.removeprefix('_send_with_')}: not delivered")
        except Exception as exc:
            log.debug("could not show a notification with %s", send.__name__, exc_info=True)
            reasons.append(f"{send.__name__.removeprefix('_send_with_')}: {type(exc).__name__}: {exc}")
    if _problem is None:
        _problem = "Notifications cannot be shown here (" + "; ".join(reasons) + ")."
        log.warning("%s Messages go to this log instead.", _problem)
    log.warning("%s: %s", title, body)
    return False


def problem() -> str | None:
    """Why the last notification could not be shown; None when it was (or none was tried yet)."""
    return _problem


def _send_with_desktop_notifier(title: str, body: str, image: Path | None, urgency: Urgency) -> bool:
    from desktop_notifier import Attachment
    from desktop_notifier import Urgency as Level

    dispatched = threading.Event()
    with _lock:  # one event loop inside the notifier: one send at a time
        _get_notifier().send(
            title,
            body,
            urgency=Level(urgency),
            attachment=Attachment(path=image) if image else None,
            on_dispatched=dispatched.set,
        )
    return dispatched.is_set()


def _get_notifier():
    global _notifier
    if _notifier is None:
        from desktop_notifier import DesktopNotifierSync

        # It logs every failed send with a traceback; `notify` says once, in words, that none can be shown.
        logging.getLogger("desktop_notifier").setLevel(logging.ERROR)
        _notifier = DesktopNotifierSync(app_name=APP_NAME)
    return _notifier


def _send_with_notify_send(title: str, body: str, image: Path | None, urgency: Urgency) -> bool:
    program = shutil.which("notify-send")
    if program is None:
        return False
    args = [program, "--app-name", APP_NAME, "--urgency", urgency]
    if image is not None:
        args += ["--hint", f"string:image-path:{image.resolve().as_uri()}"]
    args += ["--", title, body]
    return subprocess.run(args, capture_output=True, timeout=10).returncode == 0
