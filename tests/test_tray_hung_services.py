"""`dreamtray run` with a notification daemon that owns the name on the bus and never answers, and under a burst
of 200 `trigger` commands at once. Real Xvfb, dbus-daemon, trayer and `dreamtray run`."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tray_process import TrayProcess, newest, tray_home
from xsession import XSession, wait_until

SILENT_NOTIFIER = Path(__file__).with_name("silent_notifier.py")


@pytest.fixture
def hung_notifications(tmp_path):
    """A session whose notification daemon never answers (not even introspection), and a tray host in it."""
    session = XSession().start(dunst=False)
    calls = tmp_path / "calls.log"
    calls.touch()
    daemon = session.spawn([sys.executable, str(SILENT_NOTIFIER), "silent", str(calls)], stdout=subprocess.PIPE)
    assert daemon.stdout.readline().strip() == b"ready"
    trayer = session.start_tray()
    yield session, calls
    session.stop_tray(trayer)
    session.close()


def test_a_hung_notification_daemon_holds_up_no_image_and_no_trigger(hung_notifications, tmp_path):
    session, calls = hung_notifications
    tray = TrayProcess(tray_home(tmp_path, session))
    try:
        tray.wait_docked()
        tray.wait_started()
        first = tray.trigger("clipboard", "--prompt", "a lantern in the fog", timeout=60)
        second = tray.trigger("clipboard", "--prompt", "a boat at dawn", timeout=60)
        wait_until(lambda: len(newest(tray.home.gallery)) == 2, 300, "both images", 0.2)
        tray.wait_idle()
        third = tray.trigger("clipboard", "--prompt", "a fox", "--wait", timeout=300)
        problems = wait_until(lambda: tray.status()["problems"], 60, "the tray to say notifications are not shown")
    finally:
        tray.stop()
        tray.home.stop_engine()
    for result in (first, second, third):  # before: "did not answer within 10 s" while the job was queued
        assert result.returncode == 0, result.stderr
    assert "#2 " in second.stdout
    assert "did not answer within 5 s" in " ".join(problems)
    assert calls.read_text(), "the daemon was asked"
    assert "Traceback" not in tray.log_text()


def test_200_triggers_at_once_are_all_answered(tray, tmp_path):
    home = tray_home(tmp_path, tray, config="queue_length = 2\n")
    process = TrayProcess(home)
    try:
        process.wait_docked()
        process.wait_started()
        args = [sys.executable, "-m", "dreamtray", "trigger", "pause"]

        def press(_: int) -> subprocess.CompletedProcess:
            return subprocess.run(args, env=home.env, capture_output=True, text=True, timeout=300)

        with ThreadPoolExecutor(50) as pool:  # 200 presses, 50 at a time, as the report measured
            results = list(pool.map(press, range(200)))
        status = process.status()
    finally:
        process.stop()
        home.stop_engine()
    refused = [result.stderr for result in results if result.returncode != 0]
    assert refused == [], refused[:3]
    assert all(result.stdout.strip() == "Hotkeys paused." for result in results)
    assert status["paused"] is True
    assert "Traceback" not in process.log_text()
