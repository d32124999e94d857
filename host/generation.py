"""The way every image travels, in one direction: plugins prepare the request (once), the action shapes it,
styles apply, the engine makes it, the gallery keeps it with full metadata, then the action and the
`image_generated` hooks get it.

`generate` is the route for a new image, `refine` for an image made from another (saved beside it, with its
lineage). Every front end that makes images calls one of them: the command line, the tray, `trigger`, the
prompt box, plugins' commands. The image is saved before any plugin code sees it, so a failing action can never
lose it, and its metadata keeps the request as the user gave it apart from what plugins made of it, so
`generate --from` applies each plugin's change once.
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
    """The request as it goes to the engine: plugin hooks (once), the action's shape, then the styles it names."""
    request = app.plugins.prepare_request(request)
    if chosen is not None and chosen.shape_request is not None:
        request = chosen.shape_request(request)
    if request.styles:
        request = app.styles.apply(request)
    return request


Save = Callable[[Result, Request, Callable[[str], None]], list[Path]]
"""Where a route keeps a finished job's images: (result, the request as the user gave it, warn) -> paths."""


def generate(
    app: App,
    request: Request,
    chosen: Action | None = None,
    on_event: Callable[[dict[str, Any]], None] = lambda event: None,
    on_job: Callable[[Job], None] = lambda job: None,
    mark: Callable[[str], None] = lambda step: None,
    save: bool | Save = True,
) -> Outcome:
    """Generate `request` (as the user gave it), save every image, then hand them to `chosen` and the hooks.

    `save` keeps the images: True, the gallery, each with its full metadata; a Save, elsewhere (refine: beside
    the original); False (a setting of `dreamtray serve`, whose client takes the images) keeps them out of the
    gallery: they carry the same metadata, and the hooks get them with `path` None. `mark` is told as each step
    ends ('fetched': the result is here, 'saved', 'acted': the action is done), for a caller that times them."""
    given = request
    request = prepare(app, request, chosen)
    notes: list[str] = []  # the gallery's, when it could not take an image and it was kept elsewhere
    result, images, pngs = _make(app, request, given, save, on_event, on_job, notes.append, mark)
    outcome = Outcome(result, [], notes, pngs=pngs)

    def make_another(another: Request) -> GeneratedImage:
        another = another.model_copy(update={"count": 1})
        # as the user gave it: their request, with the seed and size the action asked for (plugins ran already)
        asked = given.model_copy(update={key: getattr(another, key) for key in ("seed", "width", "height", "aspect")})
        asked = asked.model_copy(update={"count": 1})
        extra_result, [extra, *_], [extra_png, *_] = _make(
            app, another, asked, save, on_event, on_job, outcome.messages.append, mark
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


def refine(
    app: App,
    image: Path,
    change: str,
    *,
    strength: float = 0.6,
    only_change: bool = False,
    out: Path | None = None,
    chosen: Action | None = None,
    on_event: Callable[[dict[str, Any]], None] = lambda event: None,
    on_job: Callable[[Job], None] = lambda job: None,
    **fields: Any,
) -> Outcome:
    """Refine the image file `image` as `change` says, along the same route as `generate` (plugins, styles named
    in `fields`, engine, hooks); the new PNG lands beside it (or at `out`) with its lineage.

    A file that cannot be refined raises ValueError naming it; engine problems raise the engine's errors."""
    from dreamtray.image_input import read_image_file
    from dreamtray.images.refine import refine_request, save_refined

    names = fields.pop("styles", None)  # style names: applied on the route, like any request's
    try:
        original = read_image_file(image, "")
        request = refine_request(original, change, strength=strength, only_change=only_change, **fields)
        if names:
            request = request.model_validate({**request.model_dump(), "styles": names})
    except ValueError as exc:
        raise ValueError(f"{image}: {exc}") from None

    def beside(result: Result, given: Request, warn: Callable[[str], None]) -> list[Path]:
        return [save_refined(result, given, original, image, out, warn)]

    return generate(app, request, chosen, on_event=on_event, on_job=on_job, save=beside)


def _make(
    app: App,
    request: Request,
    given: Request,
    save: bool | Save,
    on_event: Callable[[dict[str, Any]], None],
    on_job: Callable[[Job], None],
    warn: Callable[[str], None],
    mark: Callable[[str], None],
) -> tuple[Result, list[GeneratedImage], list[bytes]]:
    """The engine makes `request`; `save` keeps every image before anything else sees it (the gallery, where it
    cannot take one, keeps it in a fallback folder and `warn` says where), with `given` (the request as the user
    gave it) in its metadata, unless `save` is off. Returns the result, its images and their PNG files with
    metadata."""
    from dreamtray.images.metadata import add_metadata, given_texts

    job = app.engine.submit(request)
    on_job(job)
    for event in job.events():
        on_event(event)
    result = job.result()
    mark("fetched")
    if save is True:
        paths: list[Path | None] = list(app.gallery.save_result(result, warn=warn, texts=given_texts(given)))
    elif save is False:
        paths = [None] * len(result.seeds)
    else:
        paths = list(save(result, given, warn))
    mark("saved")
    requests = [result.request_for(seed) for seed in result.seeds]
    pngs = [
        path.read_bytes()
        if path
        else add_metadata(png, request, model=result.model, sampler=result.sampler, texts=given_texts(given))
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
