"""Embeddings of the texts that repeat from job to job: the empty negative prompt, a style's negative prompt.

With classifier-free guidance, Stable Diffusion encodes the negative prompt in every job, though it is nearly
always the same text. The encoding is kept with the loaded model, keyed by the text encoder (torch or OpenVINO),
the autocast dtype and the LoRAs applied, so the pixels are exactly those the pipeline makes by itself.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from dreamtray.engine.server.loaded import Loaded
from dreamtray.request import Request

KEEP = 16
"""Distinct negative prompts kept per loaded model."""
PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
"""Pipelines whose negative prompt is encoded alone, exactly as `encode_prompt` encodes a prompt."""


def negative_prompt_arguments(loaded: Loaded, pipe, request: Request, autocast: str | None) -> dict[str, Any]:
    """The negative-prompt arguments of the pipeline call: cached embeddings where they apply, else the text.

    Call it inside the same autocast context as the pipeline, which computes the embeddings on a miss.
    """
    text = request.negative_prompt or ""
    guided = request.guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None
    if type(pipe).__name__ not in PIPELINES or not guided:
        return {"negative_prompt": text or None}
    cache: OrderedDict = loaded.extras.setdefault("embeddings", OrderedDict())
    key = (id(pipe.text_encoder), autocast, loaded.loras, text)
    if key not in cache:
        device = pipe._execution_device
        cache[key] = pipe.encode_prompt(text, device, 1, do_classifier_free_guidance=False)[0]
        while len(cache) > KEEP:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return {"negative_prompt_embeds": cache[key]}
