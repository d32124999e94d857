"""Embeddings of the texts that repeat from job to job: the empty negative prompt, a style's negative prompt.

With classifier-free guidance, Stable Diffusion encodes the negative prompt in every job, though it is nearly
always the same text. Where the negative goes to the pipeline as plain text (prompts.py leaves plain prompts that
fit the window as text), its encoding is kept with the loaded model, keyed by the text encoder (torch or
OpenVINO), the autocast dtype and the LoRAs applied, so the pixels are exactly those the pipeline makes by itself.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from dreamtray.engine.server.loaded import Loaded

KEEP = 16
"""Distinct negative prompts kept per loaded model."""
PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
"""Pipelines whose negative prompt is encoded alone, exactly as `encode_prompt` encodes a prompt."""


def with_cached_negative(
    loaded: Loaded, pipe, arguments: dict[str, Any], guidance: float, autocast: str | None
) -> dict[str, Any]:
    """The pipeline's text arguments, with a plain-text negative prompt replaced by its cached embeddings.

    Call it inside the same autocast context as the pipeline, which computes the embeddings on a miss.
    """
    guided = guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None
    if type(pipe).__name__ not in PIPELINES or not guided or "prompt_embeds" in arguments:
        return arguments
    text = arguments.get("negative_prompt") or ""
    cache: OrderedDict = loaded.extras.setdefault("embeddings", OrderedDict())
    key = (id(pipe.text_encoder), autocast, loaded.loras, text)
    if key not in cache:
        device = pipe._execution_device
        cache[key] = pipe.encode_prompt(text, device, 1, do_classifier_free_guidance=False)[0]
        while len(cache) > KEEP:
            cache.popitem(last=False)
    cache.move_to_end(key)
    rest = {name: value for name, value in arguments.items() if name != "negative_prompt"}
    return rest | {"negative_prompt_embeds": cache[key]}
