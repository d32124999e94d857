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


def notify(title: str, body: str = "", image_path: Path | str | None = None, urgency: Urgency = "normal") -> bool:
    """Show a notification; True when one was handed to the desktop. Never raises."""
    image = Path(image_path) if image_path else None
    if image is not None and not image.is_file():
        image = None
    for send in (_send_with_desktop_notifier, _send_with_notify_send):
        try:
            if send(title, body, image, urgency):
                return True
        except Exception:
            log.warning("could not show a notification with %s", send.__name__, exc_info=True)
    log.warning("no notification shown: %s: %s", title, body)
    return False


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
