"""python-xlib shared by threads (as pystray's X11 icon shares it): a reply asked for while another thread sends
is answered, also where python-xlib's sender returns early without waking the thread that waits for it."""

from __future__ import annotations

import select
import threading

import Xlib.threaded  # noqa: F401 (real locks, as pystray and pynput have them)
from Xlib import X, Xatom
from Xlib import display as xdisplay
from Xlib.protocol import display as protocol
from xsession import wait_until

from dreamtray.desktop import xlib_threads


def test_a_reply_asked_for_while_another_thread_sends_is_answered(xsession, monkeypatch):
    monkeypatch.setattr(protocol.Display, "send_and_recv", protocol.Display.send_and_recv)  # undone after
    assert xlib_threads.install() and xlib_threads.install(), "installed once, however often asked"
    icon, other = xdisplay.Display(xsession.display), xdisplay.Display(xsession.display)
    window = icon.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent, event_mask=X.PropertyChangeMask)
    icon.sync()
    connection, gate, sender = icon.display, threading.Event(), threading.Event()

    class Gated:
        """select() as python-xlib calls it; the sending thread's call waits for the gate, then finds data to
        read: the moment at which python-xlib's sender returns without waking the waiting thread."""

        error = OSError

        @staticmethod
        def select(read, write, errors, timeout=None):
            if threading.current_thread().name == "sender":
                sender.set()
                assert gate.wait(30), "the test opens the gate"
                return read, write, []
            return select.select(read, write, errors, timeout)

    monkeypatch.setattr(protocol, "select", Gated)
    answer = {}

    def icon_loop() -> None:  # pystray's loop: an event, then a request with a reply (docking the icon)
        icon.next_event()
        answer["owner"] = icon.get_selection_owner(Xatom.PRIMARY)

    def send() -> None:  # another thread updates the icon: pystray's dispatcher sends a message and flushes
        window.change_property(Xatom.WM_NAME, Xatom.STRING, 8, b"busy")
        icon.flush()

    loop = threading.Thread(target=icon_loop, daemon=True)
    loop.start()
    wait_until(lambda: connection.recv_active, 30, "the icon loop to receive")
    threading.Thread(target=send, name="sender", daemon=True).start()
    assert sender.wait(30) and connection.send_active
    seen_by_other = other.create_resource_object("window", window.id)
    seen_by_other.change_property(Xatom.WM_ICON_NAME, Xatom.STRING, 8, b"event")  # the loop's event
    other.flush()
    wait_until(lambda: connection.request_waiting, 30, "the icon loop to wait for the sender")
    gate.set()
    loop.join(30)
    assert not loop.is_alive(), "the reply was waited for forever"
    assert answer["owner"] is not None
