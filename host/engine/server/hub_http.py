"""Requests to a model hub with every answer bounded: redirects followed by hand, metadata read within a size
and a total time.

httpx, left to follow redirects, reads each redirect's body whole and follows up to 20 of them; a hub (or a
mirror named by `HF_ENDPOINT`) that answers with an endless body, a trickle, or a chain of redirects would
hold the worker until the watchdog steps in. Here a redirect's body is never read, at most REDIRECTS are
followed and only to http(s) addresses, and a metadata answer (JSON) is refused past MAX_ANSWER_BYTES or
ANSWER_SECONDS in all, with a message that says which hub did what.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from dreamtray.engine.downloads import human

REDIRECTS = 5
"""Redirects followed for one request (the hub sends one, to its CDN)."""
MAX_ANSWER_BYTES = 16 * 1000 * 1000
"""The largest metadata answer read (a model's info with thousands of files is a few MB)."""
ANSWER_SECONDS = 60.0
"""The longest a metadata answer may take in all, however it trickles (under the watchdog's stall bound)."""


class DownloadError(RuntimeError):
    """A download that cannot go on; the message says why and what to do."""


@contextlib.contextmanager
def send(client: httpx.Client, method: str, url: str, endpoint: str, **kwargs: Any) -> Iterator[httpx.Response]:
    """The streamed final answer to `method url`, after at most REDIRECTS redirects whose bodies are not read.

    httpx's own errors (timeouts, dropped connections) pass through for the caller to word or retry."""
    request = client.build_request(method, url, **kwargs)
    for _ in range(REDIRECTS + 1):
        response = client.send(request, stream=True, follow_redirects=False)
        if not response.has_redirect_location:
            break
        response.close()
        request = response.next_request
        if request is None or request.url.scheme not in ("http", "https"):
            raise DownloadError(f"The hub at {endpoint} redirected {url} to an address that is not http(s).")
    else:
        response.close()
        raise DownloadError(
            f"The hub at {endpoint} sent more than {REDIRECTS} redirects in a row for {url}. "
            "The hub or mirror (HF_ENDPOINT) is misconfigured: try again later, or use another mirror."
        )
    try:
        yield response
    finally:
        response.close()


def read_json(response: httpx.Response, what: str, endpoint: str, seconds: float = ANSWER_SECONDS) -> Any:
    """The JSON body of `response` (asked for with `Accept-Encoding: identity`), read within MAX_ANSWER_BYTES
    and `seconds` from now; DownloadError past them (or for a body that is not JSON)."""
    if response.headers.get("Content-Encoding", "identity") != "identity":  # asked for identity: no bomb to unpack
        raise DownloadError(f"The hub at {endpoint} answered about {what} compressed, though asked not to.")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise _too_large(what, endpoint, int(declared))
    deadline = time.monotonic() + seconds
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise _too_large(what, endpoint, len(body))
        if time.monotonic() > deadline:
            raise DownloadError(
                f"The hub at {endpoint} took more than {seconds:g} s to answer about {what} "
                f"({human(len(body))} so far). Check the connection, or try again later or another mirror."
            )
    try:
        return json.loads(body)
    except ValueError as exc:
        raise DownloadError(f"The hub at {endpoint} answered about {what} in a form dreamtray cannot read.") from exc


def _too_large(what: str, endpoint: str, size: int) -> DownloadError:
    return DownloadError(
        f"The hub at {endpoint} answered about {what} with {human(size)} or more, more than the "
        f"{human(MAX_ANSWER_BYTES)} a model's description can be; nothing of it was kept. The hub or mirror "
        "(HF_ENDPOINT) is broken or hostile: use the official hub or another mirror."
    )
