"""Another dreamtray engine service (`dreamtray serve`, or a Ray Serve pool of them), reached over the network.

Settings (`[engine.backends.remote]`): url, token_file (or api_key_env, default DREAMTRAY_REMOTE_TOKEN, or the
keyring: service "dreamtray", user "remote"), verify (true, false, or the path of a CA/certificate file for
a self-signed server), timeout.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx

from dreamtray.api import EngineError, EngineUnavailable, ServiceEngine

from .credentials import require_secret
from .numbers import setting
from .transport import MAX_RETRIES, MAX_RETRY_WAIT, error_message, read_bounded, retry_after, tls_verify

TOKEN_ENV = "DREAMTRAY_REMOTE_TOKEN"


class RemoteService(ServiceEngine):
    """ServiceEngine, plus: waits out 429s (bounded) and words timeouts and cut-off answers for the user."""

    name = "remote"

    def __init__(
        self,
        url: str,
        token: str,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(url, token, verify=verify, timeout=timeout)
        self.sleep, self.timeout = sleep, timeout

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> RemoteService:
        if not settings.get("url"):
            raise EngineError("The remote engine needs a url, for example https://gpu-box:8765.")
        secrets = dict(settings)
        if settings.get("token_file"):
            secrets["api_key_file"] = settings["token_file"]
        token = require_secret(secrets, cls.name, TOKEN_ENV, what="token")
        return cls(
            settings["url"],
            token,
            verify=tls_verify(settings.get("verify", True)),
            timeout=setting(settings, "timeout", 30, 0.1, 86400),
        )

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        for attempt in range(MAX_RETRIES + 1):
            try:
                response = read_bounded(self.http, method, path, f"The engine at {self.url}", self.timeout, **kwargs)
            except httpx.TimeoutException:
                raise EngineUnavailable(f"The engine at {self.url} did not answer in time.") from None
            except httpx.TransportError as exc:
                raise self.unavailable(exc) from None
            if response.status_code != 429:
                break
            delay = retry_after(response, attempt)
            if attempt == MAX_RETRIES or delay > MAX_RETRY_WAIT:
                raise EngineUnavailable(
                    f"The engine at {self.url} is rate-limiting requests: {error_message(response)}"
                )
            self.sleep(delay)
        self.check(response)
        try:
            return response.json()
        except ValueError:
            raise EngineError(f"The engine at {self.url} sent an incomplete answer; try again.") from None
