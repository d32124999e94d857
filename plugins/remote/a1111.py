"""The AUTOMATIC1111 / Forge web UI API: /sdapi/v1/txt2img and img2img, /progress, /interrupt.

Settings (`[engine.backends.a1111]`): url (default http://127.0.0.1:7860), user (for a server started with
--api-auth; the password from password_env, default DREAMTRAY_A1111_PASSWORD, or the keyring), timeout,
progress_interval (seconds between progress polls), default_steps, default_guidance, native_size (the
checkpoint's side in pixels, default 512: a request's aspect is made at that many pixels), verify.

The body is A1111's: width and height from the request's shape, the sampler by A1111's name with the schedule
type apart (`sampler_name` "DPM++ 2M", `scheduler` "karras", as A1111 1.9+ takes them), and a named model as
`override_settings` with `override_settings_restore_afterwards: false`, so the checkpoint is loaded once
and stays (restoring it after every request would swap checkpoints twice per image).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

from dreamtray.api import EngineError, Request, Result, SamplerError, a1111_sampler

from .credentials import require_secret
from .images import png_from_b64
from .jobs import ThreadJob
from .numbers import setting
from .transport import HttpApi

DEFAULT_URL = "http://127.0.0.1:7860"
PASSWORD_ENV = "DREAMTRAY_A1111_PASSWORD"


class A1111:
    """The Engine interface over an AUTOMATIC1111-compatible server (one job at a time, as it runs them)."""

    name = "a1111"

    def __init__(self, settings: dict[str, Any], **http_options: Any):
        self.settings = settings
        self.default_steps = setting(settings, "default_steps", 20, 1, 150, whole=True)
        self.default_guidance = setting(settings, "default_guidance", 7.0, 0, 30)
        self.native_size = setting(settings, "native_size", 512, 64, 4096, whole=True)
        self.progress_interval = setting(settings, "progress_interval", 0.5, 0.01, 60)
        auth = None
        if settings.get("user"):
            secrets = {"api_key_env": PASSWORD_ENV, **settings}
            auth = (settings["user"], require_secret(secrets, self.name, PASSWORD_ENV, what="password"))
        self.api = HttpApi(
            "AUTOMATIC1111",
            settings.get("url", DEFAULT_URL),
            timeout=setting(settings, "timeout", 600, 0.1, 86400),
            verify=settings.get("verify", True),
            auth=auth,
            **http_options,
        )

    def body(self, request: Request) -> dict[str, Any]:
        """The txt2img / img2img body the API expects."""
        width, height = request.pixel_size(self.native_size)
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "steps": request.steps or self.default_steps,
            "cfg_scale": self.default_guidance if request.guidance is None else request.guidance,
            "width": width,
            "height": height,
            "batch_size": 1,
            "n_iter": request.count,
            "send_images": True,
            "save_images": False,
        }
        if request.sampler:
            try:
                body.update(a1111_sampler(request.sampler))
            except SamplerError as exc:
                raise EngineError(f"{self.api.where()}: {exc}.") from None
        if request.model:
            body["override_settings"] = {"sd_model_checkpoint": request.model}
            body["override_settings_restore_afterwards"] = False
        if request.init_image is not None:
            body["init_images"] = [base64.b64encode(request.init_image).decode("ascii")]
            body["denoising_strength"] = request.strength
        return body

    def _generate(self, request: Request, emit, cancelled) -> Result:
        started = time.perf_counter()
        request = request.with_seed()
        body = self.body(request)
        path = "/sdapi/v1/img2img" if request.init_image is not None else "/sdapi/v1/txt2img"
        emit({"kind": "start", "total": body["steps"] * request.count})
        finished = threading.Event()
        poller = threading.Thread(target=self._follow_progress, args=(emit, finished, cancelled), daemon=True)
        poller.start()
        try:
            answer = self.api.json("POST", path, json=body)
        finally:
            finished.set()
            poller.join()
        images = answer.get("images") if isinstance(answer, dict) else None
        if not images:
            raise EngineError(f"{self.api.where()} answered without images.")
        images = [png_from_b64(image, self.api.where()) for image in images[-request.count :]]  # a grid may lead
        info = _info(answer)
        warnings = (
            []
            if request.loras == ()
            else ["The AUTOMATIC1111 engine takes LoRAs in the prompt (<lora:name:1>); the loras field was ignored."]
        )
        return Result(
            request=request.model_copy(
                update={
                    "steps": body["steps"],
                    "guidance": body["cfg_scale"],
                    "width": body["width"],
                    "height": body["height"],
                }
            ),
            images=images,
            seeds=info.get("all_seeds") or [request.seed + i for i in range(len(images))],
            model=info.get("sd_model_name") or request.model or "",
            sampler=_sampler(info) or request.sampler or "",
            warnings=warnings,
            seconds=time.perf_counter() - started,
        )

    def _follow_progress(self, emit, finished: threading.Event, cancelled) -> None:
        """Poll /sdapi/v1/progress while the generation call runs, emitting step events as they change."""
        last = 0
        while not finished.wait(self.progress_interval) and not cancelled():
            try:
                state = self.api.json(
                    "GET", "/sdapi/v1/progress", params={"skip_current_image": "true"}, timeout=10
                ).get("state", {})
            except EngineError:
                continue  # progress is a nicety: the generation call reports real failures
            steps, step = int(state.get("sampling_steps") or 0), int(state.get("sampling_step") or 0)
            jobs, job_no = int(state.get("job_count") or 1), int(state.get("job_no") or 0)
            done = job_no * steps + step
            if steps and done > last:
                last = done
                emit({"kind": "step", "step": done, "total": steps * max(jobs, 1)})

    def submit(self, request: Request) -> ThreadJob:
        return ThreadJob(request, lambda emit, cancelled: self._generate(request, emit, cancelled), self._interrupt)

    def _interrupt(self) -> None:
        try:
            self.api.send("POST", "/sdapi/v1/interrupt", timeout=10)
        except EngineError:
            pass  # the job is discarded anyway

    def health(self) -> dict[str, Any]:
        options = self.api.json("GET", "/sdapi/v1/options", timeout=10)
        return {
            "status": "ok",
            "service": "a1111",
            "url": self.api.url,
            "loaded_model": options.get("sd_model_checkpoint"),
        }

    def models(self) -> list[dict[str, Any]]:
        return [
            {"id": model.get("title"), "object": "model", "owned_by": "a1111", "name": model.get("model_name")}
            for model in self.api.json("GET", "/sdapi/v1/sd-models")
        ]

    def unload(self) -> None:
        self.api.send("POST", "/sdapi/v1/unload-checkpoint")

    def close(self) -> None:
        self.api.close()


def _sampler(info: dict[str, Any]) -> str | None:
    """The sampler A1111 reports, with its schedule type as one name (`DPM++ 2M Karras`)."""
    name = info.get("sampler_name")
    extra = info.get("extra_generation_params")
    schedule = info.get("scheduler") or (extra.get("Schedule type") if isinstance(extra, dict) else None)
    if not name or not schedule or str(schedule).lower() == "automatic":
        return name
    return f"{name} {str(schedule).replace('_', ' ').title()}"


def _info(answer: dict[str, Any]) -> dict[str, Any]:
    """A1111's `info` is a JSON document inside a string."""
    try:
        info = json.loads(answer.get("info") or "{}")
    except (TypeError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
