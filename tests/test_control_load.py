"""The control channel (`dreamtray trigger`) under load and against bad input: 200 commands at once, 200 raw
connections, replies and commands of megabytes, deeply nested or broken JSON, a client that says nothing."""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from dreamtray.desktop import control


@pytest.fixture
def server(runtime):
    """A control server whose handler holds each command until 50 are in (a burst of presses), then echoes."""
    burst = threading.Barrier(50, timeout=60)

    def handler(message):
        if message.get("action") == "press":
            try:
                burst.wait()
            except threading.BrokenBarrierError:
                pass
        return {"ok": True, "echo": message}

    served = control.ControlServer(handler)
    served.start()
    yield served
    served.stop()


def raw_exchange(data: bytes) -> dict:
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(30)
        raw.connect(str(control.socket_path()))
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
        return json.loads(raw.makefile("rb").readline())


def test_200_presses_at_once_are_all_answered(server):
    with ThreadPoolExecutor(200) as pool:
        replies = list(pool.map(lambda n: control.send({"action": "press", "n": n}, timeout=60), range(200)))
    assert sorted(reply["echo"]["n"] for reply in replies) == list(range(200))


def test_200_raw_connections_at_once_are_all_accepted(server):
    sockets = []
    try:
        for _ in range(200):  # all connected before any is served: the backlog holds them
            raw = socket.socket(socket.AF_UNIX)
            raw.settimeout(30)
            raw.connect(str(control.socket_path()))
            sockets.append(raw)
        for number, raw in enumerate(sockets):
            raw.sendall(json.dumps({"action": "status", "n": number}).encode() + b"\n")
        replies = [json.loads(raw.makefile("rb").readline()) for raw in sockets]
    finally:
        for raw in sockets:
            raw.close()
    assert [reply["echo"]["n"] for reply in replies] == list(range(200))


def test_a_reply_of_megabytes_arrives_whole(runtime):
    prompts = ["a lantern " * 2000] * 50  # the queue of long prompts that broke the 64 KB line
    served = control.ControlServer(lambda message: {"ok": True, "jobs": prompts})
    served.start()
    try:
        assert control.send({"action": "queue"})["jobs"] == prompts
    finally:
        served.stop()


def test_a_reply_too_long_is_told_not_cut(runtime):
    served = control.ControlServer(lambda message: {"ok": True, "jobs": "x" * control.MAX_MESSAGE})
    served.start()
    try:
        reply = control.send({"action": "queue"})
    finally:
        served.stop()
    assert reply["ok"] is False and "could not be sent: it is too long" in reply["message"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"[" * 100_000 + b"\n", "it is nested too deeply"),
        (b'{"action": ' * 5000 + b"\n", "it is "),
        (b"\xff\xfe not text\n", "it is not JSON"),
        (b"[1, 2]\n", "it is not a JSON object"),
        (b'{"action": "status"', "it ended before its end of line"),
        (b"{" + b" " * (control.MAX_MESSAGE + 10), "it is longer than"),
    ],
)
def test_bad_commands_get_an_error_reply(server, data, why):
    reply = raw_exchange(data)
    assert reply["ok"] is False
    assert reply["message"].startswith(f"dreamtray could not read the command: {why}")


def test_the_channel_serves_on_after_bad_commands_and_silent_clients(server, monkeypatch):
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(str(control.socket_path()))  # says nothing: its handler gives up after READ_TIMEOUT
    try:
        raw_exchange(b"[" * 100_000 + b"\n")
        assert control.send({"action": "status"}) == {"ok": True, "echo": {"action": "status"}}
    finally:
        silent.close()


def test_a_command_too_long_to_send_is_refused_by_the_client(server):
    with pytest.raises(control.ControlError, match="too long"):
        control.send({"action": "x", "prompt": "x" * control.MAX_MESSAGE})
