"""AUTOMATIC1111's HTTP API (`/sdapi/v1/...`) over dreamtray's engine, for the clients that speak it (Open WebUI,
SillyTavern, editor plugins, bots, the `webuiapi` package).

txt2img and img2img run along the core's route (plugins, styles, the engine, the gallery as `serve --gallery`
says, `image_generated`) and answer with A1111's shapes: `images` (base64 PNGs with A1111 `parameters` text),
`parameters` (the body echoed) and `info` (a JSON string). A batch (`batch_size` x `n_iter`, at most 8 images) is
one engine job, so `/skip` ends it as `/interrupt` does: as in A1111, the image being made is finished as far as
it got and answered, with the batch's images before it (queued requests still run). `/progress` follows the
running A1111 request, with the fast path's preview as `current_image`. Errors have A1111's shape:
`{"error", "detail", "body", "errors"}`.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from dreamtray import samplers
from dreamtray.engine.client import Job
from dreamtray.engine.presets import PRESETS
from dreamtray.engine.server import a1111_fields
from dreamtray.engine.server.a1111_fields import A1111Error, Img2ImgBody, Txt2ImgBody
from dreamtray.engine.server.api_fields import Styles, check_model
from dreamtray.engine.server.routing import ManagerJob, Routed
from dreamtray.request import Request

PREFIX = "/sdapi/v1"
DEFAULT_PREVIEW_EVERY = 5
"""Steps between the previews that /progress shows (A1111's option `show_progress_every_n_steps`; 0: none)."""


def error_body(status: int, message: str, kind: str) -> JSONResponse:
    """An error as A1111 answers one (its api_middleware's shape)."""
    return JSONResponse({"error": kind, "detail": message, "body": "", "errors": message}, status_code=status)


class Progress:
    """What /progress reports: the running A1111 request's job, its steps and last preview."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: list[ManagerJob] = []
        self.started = 0.0
        self.step = self.total = 0
        self.preview: str | None = None
        self.interrupted = self.skipped = False

    def begin(self, job: Job) -> None:
        with self.lock:
            self.jobs.append(cast(ManagerJob, job))  # this service's engine (ManagerEngine) makes its jobs
            self.started, self.step, self.total, self.preview = time.time(), 0, 0, None
            self.interrupted = self.skipped = False
        threading.Thread(target=self._follow, args=(job,), daemon=True).start()

    def _follow(self, job: Job) -> None:
        try:
            for event in job.events():
                with self.lock:
                    if event.get("kind") in ("step", "start"):
                        self.total = int(event.get("total") or self.total)
                        self.step = int(event.get("step") or self.step)
                    elif event.get("kind") == "preview":
                        self.preview = event.get("png")
        except Exception:  # progress is a nicety: the request itself reports failures
            pass
        finally:
            with self.lock:
                if job in self.jobs:
                    self.jobs.remove(job)

    def interrupt(self, skip: bool = False) -> None:
        with self.lock:
            jobs = list(self.jobs)
            self.interrupted, self.skipped = not skip, skip
        for job in jobs:  # as A1111: the running image ends as far as it got and is answered; queued ones run
            job.interrupt()

    def report(self, with_image: bool) -> dict[str, Any]:
        with self.lock:
            running = bool(self.jobs)
            state = {
                "skipped": self.skipped,
                "interrupted": self.interrupted,
                "stopping_generation": False,
                "job": "txt2img" if running else "",
                "job_count": 1 if running else 0,
                "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(self.started or time.time())),
                "job_no": 0,
                "sampling_step": self.step,
                "sampling_steps": self.total,
            }
            if not running:
                return {"progress": 0, "eta_relative": 0, "state": state, "current_image": None, "textinfo": None}
            progress = 0.01 + (self.step / self.total if self.total else 0)
            elapsed = time.time() - self.started
            return {
                "progress": min(progress, 1),
                "eta_relative": max(0.0, elapsed / progress - elapsed),
                "state": state,
                "current_image": self.preview if with_image else None,
                "textinfo": None,
            }


def create_router(
    run: Callable[[Request, bool, Callable[[Job], None]], Routed],
    read_parameters: Callable[[bytes], tuple[str, dict[str, str]] | None],
    default_model: Callable[[], str],
    styles: Styles | None,
    gallery: str,
) -> APIRouter:
    """The A1111 endpoints. `run(request, save, on_job)` makes a request along the route; `read_parameters` reads
    a PNG's A1111 text; `default_model` is the model a request gets when it names none; `gallery` the serving
    setting (`always`, `asked`: when a request says `save_images`, `never`)."""
    router = APIRouter(prefix=PREFIX)
    progress = Progress()
    options: dict[str, Any] = {"show_progress_every_n_steps": DEFAULT_PREVIEW_EVERY}

    def checkpoint() -> str:
        return options.get("sd_model_checkpoint") or default_model()

    def set_checkpoint(name: str) -> None:
        try:
            check_model(name)
        except a1111_fields.FieldError as exc:
            raise A1111Error(str(exc), 404 if exc.status == 404 else 422) from None
        options["sd_model_checkpoint"] = name

    def generate(body: Txt2ImgBody) -> dict[str, Any]:
        a1111_fields.check_supported(body)
        overrides = a1111_fields.override_options(body.override_settings)
        model = overrides.get("sd_model_checkpoint") or checkpoint()
        if "sd_model_checkpoint" in overrides:
            check_model(model)
            if body.override_settings_restore_afterwards is False:
                set_checkpoint(model)
        preview_every = int(overrides.get("show_progress_every_n_steps", options["show_progress_every_n_steps"]))
        request = a1111_fields.to_request(body, model, max(0, min(preview_every, 150)))
        save = gallery == "always" or (gallery == "asked" and body.save_images)
        routed = run(request, save, progress.begin)
        infotexts = [_parameters_text(png) for png in routed.pngs]
        images = [base64.b64encode(png).decode("ascii") for png in routed.pngs] if body.send_images else []
        return {
            "images": images,
            "parameters": a1111_fields.echo(body),
            "info": a1111_fields.info(body, routed.result, infotexts, routed.warnings),
        }

    @router.post("/txt2img")
    def txt2img(body: Txt2ImgBody) -> dict[str, Any]:
        return generate(body)

    @router.post("/img2img")
    def img2img(body: Img2ImgBody) -> dict[str, Any]:
        return generate(body)

    @router.get("/progress")
    def get_progress(skip_current_image: bool = False) -> dict[str, Any]:
        return progress.report(with_image=not skip_current_image)

    @router.post("/interrupt")
    def interrupt() -> dict[str, Any]:
        progress.interrupt()
        return {}

    @router.post("/skip")
    def skip() -> dict[str, Any]:
        progress.interrupt(skip=True)
        return {}

    @router.get("/sd-models")
    def sd_models() -> list[dict[str, Any]]:
        names = list(dict.fromkeys([checkpoint(), *PRESETS]))
        return [
            {"title": name, "model_name": name, "hash": None, "sha256": None, "filename": name, "config": None}
            for name in names
        ]

    @router.get("/samplers")
    def sampler_list() -> list[dict[str, Any]]:
        return [{"name": name, "aliases": [], "options": {}} for name in samplers.SAMPLERS]

    @router.get("/schedulers")
    def scheduler_list() -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "label": label or "Automatic",
                "aliases": None,
                "default_rho": None,
                "need_inner_model": None,
            }
            for name, label in a1111_fields.SCHEDULERS.items()
        ]

    @router.get("/prompt-styles")
    def prompt_styles() -> list[dict[str, Any]]:
        found = list(styles) if styles is not None and hasattr(styles, "__iter__") else []
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt} for s in found]

    @router.get("/upscalers")
    def upscalers() -> list[dict[str, Any]]:
        return []

    @router.get("/sd-vae")
    def vaes() -> list[dict[str, Any]]:
        return []

    @router.get("/latent-upscale-modes")
    def latent_upscale_modes() -> list[dict[str, Any]]:
        return []

    @router.get("/scripts")
    def scripts() -> dict[str, Any]:
        return {"txt2img": [], "img2img": []}

    @router.get("/options")
    def get_options() -> dict[str, Any]:
        return {
            **{key: values[0] for key, values in a1111_fields.DEFAULT_OPTIONS.items()},
            "sd_model_checkpoint": checkpoint(),
            "show_progress_every_n_steps": options["show_progress_every_n_steps"],
            "samples_format": "png",
        }

    @router.post("/options")
    def set_options(body: dict[str, Any] = Body(...)) -> None:
        wanted = a1111_fields.override_options(body)
        if "sd_model_checkpoint" in wanted:
            set_checkpoint(str(wanted["sd_model_checkpoint"]))
        if "show_progress_every_n_steps" in wanted:
            options["show_progress_every_n_steps"] = int(wanted["show_progress_every_n_steps"])

    @router.post("/png-info")
    def png_info(image: str = Body(..., embed=True)) -> dict[str, Any]:
        data = a1111_fields.decode_image(image.strip(), "image")
        found = read_parameters(data)
        text, fields = found if found else ("", {})
        return {"info": text, "items": _other_texts(data), "parameters": fields}

    return router


def _parameters_text(png: bytes) -> str:
    """The `parameters` text chunk of a PNG ('' when it has none)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as picture:
        return str(getattr(picture, "text", {}).get("parameters", ""))


def _other_texts(png: bytes) -> dict[str, str]:
    """The image's other text chunks, as A1111's png-info lists them in `items`."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as picture:
        texts = dict(getattr(picture, "text", {}) or {})
    texts.pop("parameters", None)
    return {key: str(value) for key, value in texts.items()}
