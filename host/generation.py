"""The way a request travels, in one direction: plugins prepare it, styles shape it, the engine makes it,
the gallery keeps it, then the action and the `image_generated` hooks get it.

The image is saved before any plugin code sees it, so a failing action can never lose it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamtray.api import Action, GeneratedImage
from dreamtray.request import Request, Result

if TYPE_CHECKING:
    from dreamtray.app import App
    from dreamtray.engine.client import Job

log = logging.getLogger("dreamtray")


@dataclass
class Outcome:
    """What a finished generation left behind, and what to tell the user."""

    result: Result
    images: list[GeneratedImage]
    messages: list[str] = field(default_factory=list)
    failed_actions: list[str] = field(default_factory=list)
    extras: list[GeneratedImage] = field(default_factory=list)
    """Images an action asked for besides the request's own (`GeneratedImage.make_another`), also saved."""
    pngs: list[bytes] = field(default_factory=list)
    """The request's images as PNG files with their metadata (for a caller that sends them on: `serve`)."""

    @property
    def paths(self) -> list[Path]:
        return [image.path for image in self.images]


def prepare(app: App, request: Request, chosen: Action | None = None) -> Request:
    """The request as it goes to the engine: plugin hooks, the action's shape, then the styles it names."""
    request = app.plugins.prepare_request(request)
    if chosen is not None and chosen.shape_request is not None:
        request = chosen.shape_request(request)
    if request.styles:
        request = app.styles.apply(request)
    return request


def generate(
    app: App,
    request: Request,
    chosen: Action | None = None,
    on_event: Callable[[dict[str, Any]], None] = lambda event: None,
    on_job: Callable[[Job], None] = lambda job: None,
    mark: Callable[[str], None] = lambda step: None,
    save: bool = True,
) -> Outcome:
    """Generate `request`, save every image in the gallery, then hand them to `chosen` and the hooks.

    `mark` is told as each step ends ('fetched': the result is here, 'saved', 'acted': the action is done), for
    a caller that times them. `save` False (a setting of `dreamtray serve`, whose client takes the images) keeps
    them out of the gallery: they carry the same metadata, and the hooks get them with `path` None."""
    request = prepare(app, request, chosen)
    notes: list[str] = []  # the gallery's, when it could not take an image and it was kept elsewhere
    result, images, pngs = _make(app, request, on_event, on_job, notes.append, mark, save)
    outcome = Outcome(result, [], notes, pngs=pngs)

    def make_another(another: Request) -> GeneratedImage:
        another = another.model_copy(update={"count": 1})
        extra_result, [extra, *_], [extra_png, *_] = _make(
            app, another, on_event, on_job, outcome.messages.append, mark, save
        )
        outcome.extras.append(extra)
        outcome.messages.extend(extra_result.warnings)
        _announce(app, extra, extra_png)
        return extra

    for image, png in zip(images, pngs, strict=True):
        image = replace(image, make_another=make_another)
        outcome.images.append(image)
        if chosen is not None:
            _run_action(chosen, image, outcome)
        mark("acted")
        _announce(app, image, png)
    outcome.messages[:0] = result.warnings
    return outcome


def _make(
    app: App,
    request: Request,
    on_event: Callable[[dict[str, Any]], None],
    on_job: Callable[[Job], None],
    warn: Callable[[str], None],
    mark: Callable[[str], None],
    save: bool = True,
) -> tuple[Result, list[GeneratedImage], list[bytes]]:
    """The engine makes `request`; every image is saved in the gallery before anything else sees it (where the
    gallery cannot take one, it is kept in a fallback folder and `warn` says where), unless `save` is off.
    Returns the result, its images and their PNG files with metadata."""
    from dreamtray.images.metadata import add_metadata

    job = app.engine.submit(request)
    on_job(job)
    for event in job.events():
        on_event(event)
    result = job.result()
    mark("fetched")
    paths: list[Path | None] = list(app.gallery.save_result(result, warn=warn)) if save else [None] * len(result.seeds)
    mark("saved")
    requests = [result.request.model_copy(update={"seed": seed, "count": 1}) for seed in result.seeds]
    pngs = [
        path.read_bytes() if path else add_metadata(png, request, model=result.model, sampler=result.sampler)
        for path, png, request in zip(paths, result.images, requests, strict=True)
    ]
    images = [GeneratedImage(path, request) for path, request in zip(paths, requests, strict=True)]
    return result, images, pngs


def _run_action(action: Action, image: GeneratedImage, outcome: Outcome) -> None:
    try:
        message = action.run(image)
    except (Exception, SystemExit) as exc:  # plugin code: report, keep going; the image is already saved
        log.debug("action %s failed", action.name, exc_info=True)  # the trace for the log, not the user
        outcome.failed_actions.append(action.name)
        outcome.messages.append(f"{action.label} failed ({exc}); the image is saved at {image.path}.")
        return
    outcome.messages.append(message or f"{action.label}: done.")


def _announce(app: App, image: GeneratedImage, png: bytes) -> None:
    """Hand the image to the `image_generated` hooks, on their own thread. The PNG is in memory (no file stays
    open while the hooks run on) and is decoded there, when a hook first looks at the pixels: decoding it here
    held up the notification and the next job for some 10 ms."""
    from PIL import Image

    picture = Image.open(io.BytesIO(png))
    app.plugins.call_later("image_generated", image=picture, request=image.request, path=image.path)
