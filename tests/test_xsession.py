"""The test desktop itself: it comes up complete and leaves no process behind."""

from __future__ import annotations

import subprocess

import psutil
import pytest
from xsession import MissingProgram, XSession, need


def test_tray_is_running_in_the_session(tray):
    assert tray.selection_owned("_NET_SYSTEM_TRAY_S0")
    assert tray.bus_name_has_owner("org.freedesktop.Notifications")


def test_closing_stops_even_detached_programs_started_in_it():
    session = XSession().start()
    started = [proc.pid for proc in session._processes] + [session._dbus_pid]
    detached = subprocess.Popen(["sleep", "300"], env=session.environ(), start_new_session=True)
    session.close()
    detached.wait(timeout=5)  # reaped by close(): returns at once
    assert [pid for pid in [*started, detached.pid] if psutil.pid_exists(pid)] == []
    assert not session.root.exists()


def test_a_missing_program_names_its_package():
    with pytest.raises(MissingProgram, match=r"apt install no-such-package"):
        need("no-such-package")
