"""Remote engines' answers bounded in size and in total time: a server that sends an endless body, or trickles
one, is ended with a clear message (before: read whole into memory, or waited on for as long as it trickled)."""

from __future__ import annotations

import time

import pytest
from raw_http import raw_server

from dreamtray.engine.client import EngineError, EngineUnavailable
from dreamtray.request import Request
from dreamtray_plugins.remote import transport
from dreamtray_plugins.remote.a1111 import A1111
from dreamtray_plugins.remote.openai import OpenAIImages
from dreamtray_plugins.remote.service import RemoteService

SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 1}


def endless_server(pause: float, chunk: bytes):
    """A raw HTTP server whose JSON answer never ends: `chunk` after `chunk`, `pause` seconds apart."""

    def answer(conn, stop) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n")
        conn.sendall(b'{"data": [{"b64_json": "')
        while not stop.wait(pause):
            conn.sendall(chunk)

    return raw_server(answer)


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
