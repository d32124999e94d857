"""Notifications, read back from a real dunst under Xvfb."""

from __future__ import annotations

import pytest
from PIL import Image

from dreamtray.desktop import notify as notify_module
from dreamtray.desktop.notify import notify


@pytest.fixture
def thumbnail(tmp_path):
    path = tmp_path / "fox.png"
    Image.new("RGB", (64, 64), (200, 80, 20)).save(path)
    return path


def test_notification_with_image_reaches_the_desktop(xsession, thumbnail):
    xsession.notifications()  # start from an empty screen
    assert notify("Image ready", "a red fox, on the clipboard", image_path=thumbnail) is True
    shown = xsession.notifications()[0]
    assert (shown["summary"], shown["body"]) == ("Image ready", "a red fox, on the clipboard")
    assert shown["appname"] == "dreamtray"
    assert shown["icon_path"] == str(thumbnail)


def test_notify_send_is_the_fallback(xsession, thumbnail):
    assert notify_module._send_with_notify_send("Wallpaper set", "a calm sea", thumbnail, "critical") is True
    shown = xsession.notifications()[0]
    assert (shown["summary"], shown["body"], shown["appname"]) == ("Wallpaper set", "a calm sea", "dreamtray")
    assert shown["icon_path"] == str(thumbnail)


def test_notify_never_raises_without_a_notification_service(xsession, monkeypatch, tmp_path):
    monkeypatch.setattr(notify_module, "_notifier", None)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    assert notify("Image ready", "nobody listens", image_path=tmp_path / "missing.png") is False
