"""Remote engines' answers bounded in size and in total time: a server that sends an endless body, or trickles
one, is ended with a clear message (before: read whole into memory, or waited on for as long as it trickled)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dreamtray.engine.client import EngineError, EngineUnavailable
from dreamtray.request import Request
from dreamtray_plugins.remote import transport
from dreamtray_plugins.remote.a1111 import A1111
from dreamtray_plugins.remote.openai import OpenAIImages
from dreamtray_plugins.remote.service import RemoteService

SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 1}


@contextmanager
def endless_server(pause: float, chunk: bytes) -> Iterator[str]:
    """A raw HTTP server whose JSON answer never ends: `chunk` after `chunk`, `pause` seconds apart."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n")
            conn.sendall(b'{"data": [{"b64_json": "')
            while not stop.wait(pause):
                try:
                    conn.sendall(chunk)
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def engines(url: str):
    return {
        "openai": lambda: OpenAIImages({"url": url, "timeout": 1, "api_key_env": "DREAMTRAY_TEST_KEY"}),
        "a1111": lambda: A1111({"url": url, "timeout": 1}),
        "remote": lambda: RemoteService(url, "token", timeout=1),
    }


def submit(engine):
    return engine.health() if isinstance(engine, RemoteService) else engine.submit(Request(prompt="x", **SMALL)).result()


@pytest.mark.parametrize("kind", ["openai", "a1111", "remote"])
def test_a_trickling_answer_is_ended_within_the_timeout_in_all(monkeypatch, kind):
    monkeypatch.setenv("DREAMTRAY_TEST_KEY", "sk")
    with endless_server(0.05, b"AAAA") as url:  # each read is quick: only a total bound ends it
        engine = engines(url)[kind]()
        started = time.monotonic()
        with pytest.raises(EngineUnavailable, match=r"took more than 1 s to send its answer"):
            submit(engine)
        assert time.monotonic() - started < 30  # far from never (not a timing)


@pytest.mark.parametrize("kind", ["openai", "a1111", "remote"])
def test_an_endless_answer_is_refused_at_the_size_bound(monkeypatch, kind):
    monkeypatch.setenv("DREAMTRAY_TEST_KEY", "sk")
    monkeypatch.setattr(transport, "MAX_ANSWER_BYTES", 2_000_000)
    with endless_server(0.0, b"A" * 65536) as url:
        engine = engines(url)[kind]()
        with pytest.raises(EngineError, match=r"sent an answer larger than 2 MB; it was not read further"):
            submit(engine)
