"""Any OpenAI-compatible images endpoint: POST /v1/images/generations, images back as b64_json.

Settings (`[engine.backends.openai]`): url (the API root, default OpenAI's), model, api_key_env (default
OPENAI_API_KEY) or the OS keyring (service "dreamtray", user "openai"), timeout, extra_fields (also send
seed, steps, guidance and negative_prompt, for servers that read them, such as dreamtray's own), verify.
"""

from __future__ import annotations

import time
from typing import Any

from dreamtray.api import EngineError, Request, Result

from .credentials import require_secret
from .images import png_from_b64
from .jobs import ThreadJob
from .numbers import setting
from .transport import HttpApi

DEFAULT_URL = "https://api.openai.com"
DEFAULT_MODEL = "gpt-image-1"
DEFAULT_ENV = "OPENAI_API_KEY"


class OpenAIImages:
    """The Engine interface over an OpenAI-compatible images API (no progress steps: one blocking call)."""

    name = "openai"
    charges_per_image = True
    """Each image costs money: the prompt box makes no live previews with this engine."""

    def __init__(self, settings: dict[str, Any], **http_options: Any):
        self.settings = settings
        self.model = settings.get("model", DEFAULT_MODEL)
        self.extra_fields = bool(settings.get("extra_fields", False))
        key = require_secret(settings, self.name, DEFAULT_ENV)
        self.api = HttpApi(
            "OpenAI-compatible",
            settings.get("url", DEFAULT_URL),
            {"Authorization": f"Bearer {key}"},
            timeout=setting(settings, "timeout", 180, 0.1, 86400),
            verify=settings.get("verify", True),
            **http_options,
        )

    def body(self, request: Request) -> tuple[dict[str, Any], list[str]]:
        """The JSON body the API expects, and warnings about what it cannot take."""
        if request.init_image is not None:
            raise EngineError(
                "The OpenAI-compatible engine does not do image-to-image here; use the a1111 or remote engine."
            )
        model = request.model or self.model
        body: dict[str, Any] = {"model": model, "prompt": request.prompt, "n": request.count}
        if request.width and request.height:
            body["size"] = f"{request.width}x{request.height}"
        if not model.startswith("gpt-image"):
            body["response_format"] = "b64_json"  # gpt-image models always answer b64_json and refuse the field
        warnings = []
        extras = {
            "seed": request.seed,
            "steps": request.steps,
            "guidance": request.guidance,
            "negative_prompt": request.negative_prompt or None,
        }
        given = {name: value for name, value in extras.items() if value is not None}
        if self.extra_fields:
            body.update(given)
        else:
            ignored = (
                [name for name in given]
                + (["sampler"] if request.sampler else [])
                + (["loras"] if request.loras else [])
            )
            if ignored:
                warnings.append(f"The OpenAI-compatible engine ignores: {', '.join(ignored)}.")
        return body, warnings

    def _generate(self, request: Request, emit, cancelled) -> Result:
        started = time.perf_counter()
        body, warnings = self.body(request)
        emit({"kind": "start", "total": 0, "message": f"Sent to {self.api.url}"})
        answer = self.api.json("POST", "/v1/images/generations", json=body)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not data or not all(isinstance(item, dict) and item.get("b64_json") for item in data):
            raise EngineError(f"{self.api.where()} answered without b64_json images (is it an images endpoint?).")
        images = [png_from_b64(item["b64_json"], self.api.where()) for item in data]
        settled = request.with_seed()
        seeds = answer.get("seeds") or [settled.seed + i for i in range(len(images))]
        return Result(
            request=settled.model_copy(update={"model": body["model"]}),
            images=images,
            seeds=seeds,
            model=answer.get("model") or body["model"],
            sampler="",
            warnings=[*warnings, *answer.get("warnings", [])],
            seconds=time.perf_counter() - started,
        )

    def submit(self, request: Request) -> ThreadJob:
        self.body(request)  # refuse what this API cannot do before a job exists
        return ThreadJob(request, lambda emit, cancelled: self._generate(request, emit, cancelled))

    def health(self) -> dict[str, Any]:
        self.api.json("GET", "/v1/models")
        return {"status": "ok", "service": "openai", "url": self.api.url, "model": self.model}

    def models(self) -> list[dict[str, Any]]:
        return self.api.json("GET", "/v1/models").get("data", [])

    def unload(self) -> None:
        """Nothing to do: the remote service manages its own memory."""

    def close(self) -> None:
        self.api.close()
