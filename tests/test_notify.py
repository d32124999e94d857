"""Notifications, read back from a real dunst under Xvfb; and a notification daemon that hangs or vanishes
(tests/silent_notifier.py on a bus of its own), which must never hold up the caller."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from xsession import XSession, wait_until

from dreamtray.desktop import notify as notify_module
from dreamtray.desktop.notify import QUEUE_LIMIT, deliver, notify

SILENT_NOTIFIER = Path(__file__).with_name("silent_notifier.py")


@pytest.fixture
def thumbnail(tmp_path):
    path = tmp_path / "fox.png"
    Image.new("RGB", (64, 64), (200, 80, 20)).save(path)
    return path


def shown_as(xsession, summary: str) -> dict[str, str]:
    """The newest notification dunst showed with `summary`, waited for: notifications are sent on a thread of
    their own, and dunst's history also holds what earlier tests showed."""
    found = wait_until(
        lambda: [shown for shown in xsession.notifications() if shown["summary"] == summary], 30, summary
    )
    return found[0]


def test_notification_with_image_reaches_the_desktop(xsession, thumbnail):
    xsession.notifications()  # start from an empty screen
    assert notify("Image ready", "a red fox, on the clipboard", image_path=thumbnail) is True
    shown = shown_as(xsession, "Image ready")
    assert (shown["summary"], shown["body"]) == ("Image ready", "a red fox, on the clipboard")
    assert shown["appname"] == "dreamtray"
    assert shown["icon_path"] == str(thumbnail)


def test_notify_send_is_the_fallback(xsession, thumbnail):
    assert notify_module._send_with_notify_send("Wallpaper set", "a calm sea", thumbnail, "critical") is True
    shown = shown_as(xsession, "Wallpaper set")
    assert (shown["summary"], shown["body"], shown["appname"]) == ("Wallpaper set", "a calm sea", "dreamtray")
    assert shown["icon_path"] == str(thumbnail)


def test_notify_never_raises_without_a_notification_service(xsession, monkeypatch, tmp_path):
    monkeypatch.setattr(notify_module, "_notifier", None)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    monkeypatch.setattr(notify_module, "_problem", None)
    assert deliver("Image ready", "nobody listens", image=tmp_path / "missing.png") is False
    assert notify_module.problem().startswith("Notifications cannot be shown here")


@pytest.fixture
def hanging_daemon(tmp_path, monkeypatch):
    """Start a silent_notifier.py in MODE on a private session bus, this process pointed at it; its call log."""
    sessions = []

    def start(mode: str) -> Path:
        session = XSession().start(dunst=False)
        sessions.append(session)
        log = tmp_path / f"{mode}.log"
        log.touch()
        daemon = session.spawn([sys.executable, str(SILENT_NOTIFIER), mode, str(log)], stdout=subprocess.PIPE)
        assert daemon.stdout.readline().strip() == b"ready"
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.env["DBUS_SESSION_BUS_ADDRESS"])
        monkeypatch.setenv("DISPLAY", session.env["DISPLAY"])
        monkeypatch.setattr(notify_module, "_notifier", None)
        monkeypatch.setattr(notify_module, "_problem", None)
        return log

    yield start
    for session in sessions:
        session.close()


@pytest.mark.parametrize("mode", ["silent", "hang", "vanish"])
def test_a_hanging_or_vanishing_daemon_never_holds_up_the_caller(hanging_daemon, mode, thumbnail):
    calls = hanging_daemon(mode)
    assert notify("Image ready", "a red fox", image_path=thumbnail) is True
    assert notify_module.problem() is None, "notify returned before the service answered: nothing decided yet"
    wait_until(lambda: calls.read_text(), 30, "the call at the daemon")
    wait_until(lambda: notify_module._pending.unfinished_tasks == 0, 60, "the notifier to give up or deliver")
    if mode != "vanish":  # a vanished daemon may be started again by the bus, and then shows it
        assert notify_module.problem().startswith("Notifications cannot be shown here")
        assert "did not answer within 5 s" in notify_module.problem()


def test_notifications_waiting_for_a_hung_daemon_are_bounded(hanging_daemon, caplog):
    calls = hanging_daemon("silent")
    assert notify("Image 0", "made") is True
    # the notifier thread now waits (up to SEND_TIMEOUT) for the daemon's answer: nothing leaves the queue
    wait_until(lambda: calls.read_text() and notify_module._pending.empty(), 30, "the first call at the daemon")
    queued = [notify(f"Image {n}", "made") for n in range(1, QUEUE_LIMIT + 11)]
    assert queued == [True] * QUEUE_LIMIT + [False] * 10, "the first ones wait their turn, the rest are dropped"
    assert "notification dropped (the notification service is not keeping up): Image 18: made" in caplog.text
