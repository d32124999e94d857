"""Talking to a remote engine's HTTP API: every failure worded for the user, 429 retried after its delay."""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from dreamtray.api import EngineError, EngineUnavailable, JobFailed

MAX_RETRIES = 3
MAX_RETRY_WAIT = 60.0
MAX_ANSWER_BYTES = 256 * 1000 * 1000
"""The largest answer read from a remote engine (a batch of large images as base64 is tens of MB)."""


def read_bounded(http: httpx.Client, method: str, path: str, where: str, seconds: float, **kwargs: Any):
    """The answer to a request, its body read whole but within MAX_ANSWER_BYTES and, once it starts, within
    `seconds` in all (the request's own timeout when it gives one): a per-read timeout alone lets a trickle go on
    for ever. EngineError past them; httpx's own errors pass through for the caller to word."""
    timeout = kwargs["timeout"] if isinstance(kwargs.get("timeout"), (int, float)) else seconds
    with http.stream(method, path, **kwargs) as response:
        deadline, body = time.monotonic() + timeout, bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise EngineError(
                    f"{where} sent an answer larger than {MAX_ANSWER_BYTES // 1_000_000} MB; it was not read "
                    "further. Check that the url points at the engine it should."
                )
            if time.monotonic() > deadline:
                raise EngineUnavailable(
                    f"{where} took more than {timeout:g} s to send its answer ({len(body)} bytes so far); try again."
                )
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
    return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=response.request)


def tls_verify(value: str | bool) -> ssl.SSLContext | bool:
    """The `verify` setting: true (the system's CAs), false (no check), or a CA/certificate file to trust."""
    if isinstance(value, str):
        return ssl.create_default_context(cafile=str(Path(value).expanduser()))
    return bool(value)


def retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before retrying a 429: its Retry-After (seconds or a date), else 1, 2, 4..."""
    value = response.headers.get("retry-after", "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value) if value else None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    return float(2**attempt)


def error_message(response: httpx.Response) -> str:
    """The message in an error answer: OpenAI's {"error": {"message"}}, A1111's and FastAPI's shapes, or text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("detail", "errors", "error", "message"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:300]


class HttpApi:
    """An httpx client for one remote engine, turning transport and HTTP failures into EngineErrors."""

    def __init__(
        self,
        label: str,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        timeout: float = 120.0,
        verify: str | bool = True,
        auth: tuple[str, str] | None = None,
        max_retries: int = MAX_RETRIES,
        max_retry_wait: float = MAX_RETRY_WAIT,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.label, self.url, self.timeout = label, url.rstrip("/"), timeout
        self.max_retries, self.max_retry_wait, self.sleep = max_retries, max_retry_wait, sleep
        self.http = httpx.Client(
            base_url=self.url, headers=headers or {}, timeout=timeout, verify=tls_verify(verify), auth=auth
        )

    def where(self) -> str:
        return f"The {self.label} engine at {self.url}"

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response to a request, after waiting out 429s; raises for transport failures and errors."""
        for attempt in range(self.max_retries + 1):
            response = self._send_once(method, path, **kwargs)
            if response.status_code != 429:
                break
            delay = retry_after(response, attempt)
            if attempt == self.max_retries or delay > self.max_retry_wait:
                raise EngineUnavailable(
                    f"{self.where()} is rate-limiting requests (HTTP 429: {error_message(response)}); "
                    f"it asks to wait {delay:.0f} s. Try again later."
                )
            self.sleep(delay)
        self.check(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError):
            raise EngineError(
                f"{self.where()} sent an incomplete or malformed answer ({len(response.content)} bytes of "
                f"{response.headers.get('content-type', 'unknown type')}); try again."
            ) from None

    def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return read_bounded(self.http, method, path, self.where(), self.timeout, **kwargs)
        except httpx.TimeoutException:
            timeout = kwargs.get("timeout", self.timeout)
            raise EngineUnavailable(f"{self.where()} did not answer within {timeout} s.") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:  # a hang-up, or a reset, while the answer came
            raise EngineUnavailable(
                f"{self.where()} closed the connection before the whole answer arrived ({exc}); try again."
            ) from None
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"{self.where()} cannot be reached ({type(exc).__name__}: {exc}).") from None

    def check(self, response: httpx.Response) -> None:
        status = response.status_code
        if response.is_success:
            return
        message = error_message(response)
        if status in (401, 403):
            raise EngineUnavailable(
                f"{self.where()} refused the credentials (HTTP {status}: {message}). Check the API key or token."
            )
        if status >= 500:
            raise JobFailed(f"{self.where()} failed (HTTP {status}: {message}).")
        raise EngineError(f"{self.where()} rejected the request (HTTP {status}: {message}).")

    def close(self) -> None:
        self.http.close()
