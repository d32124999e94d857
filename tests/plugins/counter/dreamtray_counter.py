"""Writes one JSON line to $COUNTER_LOG for each `prepare_request` and `image_generated` call."""

import json
import os

from dreamtray.hookspecs import hookimpl


def _log(entry: dict) -> None:
    with open(os.environ["COUNTER_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


@hookimpl
def prepare_request(request):
    _log({"hook": "prepare_request", "prompt": request.prompt})
    return request.model_copy(update={"prompt": request.prompt + ", counted"})


@hookimpl
def image_generated(image, request, path):
    _log({"hook": "image_generated", "prompt": request.prompt, "seed": request.seed, "path": path and str(path)})
