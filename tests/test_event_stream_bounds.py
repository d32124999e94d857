"""A job's event stream from an engine that misbehaves: a line without end is refused at a bound instead of
filling memory, and data that is not a JSON object is worded as the engine's fault, not a traceback."""

from __future__ import annotations

import pytest
from raw_http import raw_server

from dreamtray.engine import client
from dreamtray.engine.client import EngineError, ServiceJob
from dreamtray_plugins.remote.service import RemoteService


def event_server(lines: list[bytes], endless: bytes = b""):
    """A raw HTTP server answering every request with an event stream of `lines`, then `endless` for ever."""

    def answer(conn, stop) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        conn.sendall(b"".join(lines))
        while endless and not stop.is_set():
            conn.sendall(endless)

    return raw_server(answer)


def events_from(url: str) -> list[dict]:
    return list(ServiceJob(RemoteService(url, "token", timeout=5), "7").events())


def test_events_split_on_lf_and_crlf_and_chunk_borders():
    lines = [b'data: {"kind": "progress", "step": 1}\r\n', b"\r\n", b": queued\n", b'data: {"kind": "done"}\n\n']
    with event_server(lines) as url:
        assert events_from(url) == [{"kind": "progress", "step": 1}, {"kind": "done"}]
    chunks = [b'data: {"kind"', b': "do', b'ne"}\r', b"\n", b"tail"]
    assert list(client.bounded_lines(iter(chunks), 100, "x")) == ['data: {"kind": "done"}', "tail"]


def test_a_line_without_end_is_refused_at_the_bound(monkeypatch):
    monkeypatch.setattr(client, "EVENT_LINE_BYTES", 2 * 1024 * 1024)
    with event_server([b"data: "], endless=b"A" * 65536) as url:
        with pytest.raises(EngineError, match=r"sent an event longer than 2 MiB; it was not read further"):
            events_from(url)


@pytest.mark.parametrize(
    "data", [b"not json", b"[1, 2]", b'"text"', b"[" * 100_000 + b"]" * 100_000, b'{"kind": "done"'],
    ids=["text", "array", "string", "nested-100000-deep", "cut-off"],
)
def test_data_that_is_no_json_object_is_the_engines_fault(data):
    with event_server([b"data: " + data + b"\n\n"]) as url:
        with pytest.raises(EngineError, match=r"sent a malformed event for job 7 \(\d+ characters"):
            events_from(url)
