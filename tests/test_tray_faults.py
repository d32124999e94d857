"""`dreamtray run` when desktop services fail: a session bus whose notification daemon fails to start, a bus
address that points nowhere, no tray host at all. Real Xvfb, dbus-daemon, trayer and `dreamtray run`; the
tray starts, its hotkeys make images, and each missing piece is said once, in the log and in its status."""

from __future__ import annotations

from pathlib import Path

import pytest
from tray_process import TrayProcess, newest, press, read_clipboard_png, serve_primary, tray_home
from xsession import XSession, wait_until

FAILING_SERVICE = "[D-BUS Service]\nName=org.freedesktop.Notifications\nExec=/bin/false\n"


def broken_notifications_session() -> XSession:
    """A session whose bus activates a notification daemon that exits at once (and no dunst)."""
    session = XSession()
    session._start_xvfb()
    session._make_dirs()
    services = Path(session.env["XDG_DATA_HOME"]) / "dbus-1" / "services"
    services.mkdir(parents=True)
    (services / "org.freedesktop.Notifications.service").write_text(FAILING_SERVICE)
    session._start_dbus()
    return session


def hotkey_makes_an_image(session: XSession, tray: TrayProcess) -> Path:
    serve_primary(session, "a lantern in the fog")
    before = newest(tray.home.gallery)
    press(session, "ctrl+alt+i")
    made = wait_until(lambda: [p for p in newest(tray.home.gallery) if p not in before], 180, "an image", 0.1)
    tray.wait_idle()
    wait_until(lambda: read_clipboard_png(session) == made[-1].read_bytes(), 10, "the PNG on the clipboard")
    return made[-1]


@pytest.fixture
def session_without_notifications(tmp_path):
    session = broken_notifications_session()
    trayer = session.start_tray()
    yield session
    session.stop_tray(trayer)
    session.close()


def test_the_tray_runs_when_the_notification_daemon_fails_to_start(session_without_notifications, tmp_path):
    session = session_without_notifications
    tray = TrayProcess(tray_home(tmp_path, session))
    try:
        tray.wait_docked()
        tray.wait_started()
        hotkey_makes_an_image(session, tray)
        hotkey_makes_an_image(session, tray)
        status = tray.status()
    finally:
        tray.stop()
        tray.home.stop_engine()
    log = tray.log_text()
    assert "Traceback" not in log and "GError" not in log
    assert log.count("Notifications cannot be shown here") == 1, "said once, not for every image"
    assert any(problem.startswith("Notifications cannot be shown here") for problem in status["problems"])
    assert "notifications unavailable" in status["tooltip"]


def test_the_tray_runs_when_the_bus_address_points_nowhere(tmp_path):
    with XSession().start(dunst=False) as session:
        trayer = session.start_tray()
        home = tray_home(tmp_path, session, DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus-here")
        tray = TrayProcess(home)
        try:
            tray.wait_docked()
            tray.wait_started()
            hotkey_makes_an_image(session, tray)
            status = tray.status()
        finally:
            tray.stop()
            home.stop_engine()
            session.stop_tray(trayer)
    assert "Traceback" not in tray.log_text()
    assert any("Notifications cannot be shown here" in problem for problem in status["problems"])


def test_without_a_tray_host_the_hotkeys_work_and_the_user_is_told(tmp_path):
    with XSession().start() as session:
        home = tray_home(tmp_path, session)
        tray = TrayProcess(home)
        try:
            wait_until(lambda: home.run("trigger", "status").returncode == 0, 30, "the control channel (no icon)")
            tray.wait_started()
            hotkey_makes_an_image(session, tray)
            status = tray.status()
            title = "The dreamtray icon has nowhere to show"
            shown = wait_until(lambda: [n for n in session.notifications() if n["summary"] == title], 10, title)
        finally:
            tray.stop()
            home.stop_engine()
    problem = "No system tray is running in this X session, so the dreamtray icon has nowhere to show."
    assert problem in status["problems"]
    assert tray.log_text().count(problem) == 1 and "Traceback" not in tray.log_text()
    assert len(shown) == 1 and "hotkeys" in shown[0]["body"]
