"""Text embeddings for prompts in A1111's syntax and of any length, built with compel.

The prompt is parsed by `dreamtray.prompt_syntax` (A1111's rules) and handed to compel as weighted
fragments, one compel prompt per BREAK chunk (compel's `.and()`: each part is encoded on its own and the parts
are joined). compel encodes text longer than the encoder's window in 75-token chunks, split at the last
phrase mark (`,` `.` `;` `:`) before the window's end, and concatenates them, as A1111 does.

- SD 1.x/2.x and SD-Turbo: one CLIP encoder, last hidden state.
- SDXL and SDXL-Turbo: both encoders (penultimate hidden states side by side), the pooled embedding from the
  second encoder on the prompt's plain text.
- Anything else (FLUX, a pipeline whose encoder is not a torch module): the prompt's plain text, with a
  warning when weights or BREAK cannot be honoured.

A plain prompt (no weights, no BREAK) that fits the window goes to the pipeline untouched, so it makes
exactly the image diffusers makes from it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from dreamtray.prompt_syntax import Chunk, is_plain, parse, plain_text

_COMPELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class Encoded:
    """What the pipeline call takes in place of `prompt` and `negative_prompt`."""

    kwargs: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def family(pipe: Any) -> str:
    """`sd`, `sdxl` or `plain`: how this pipeline's prompts are encoded."""
    import torch

    encoder = getattr(pipe, "text_encoder", None)
    if getattr(pipe, "tokenizer", None) is None or not isinstance(encoder, torch.nn.Module):
        return "plain"
    if "XL" in type(pipe).__name__:
        return "sdxl" if isinstance(getattr(pipe, "text_encoder_2", None), torch.nn.Module) else "plain"
    if getattr(pipe, "unet", None) is not None and getattr(pipe, "text_encoder_2", None) is None:
        return "sd"
    return "plain"


def warnings_for(pipe: Any, prompt: str, negative: str) -> list[str]:
    """What this pipeline cannot honour in the prompt (weights or BREAK on a plain-text pipeline)."""
    if family(pipe) != "plain" or all(is_plain(parse(text)) for text in (prompt, negative)):
        return []
    return [f"{type(pipe).__name__} reads the prompt as plain text: its A1111 weights and BREAK are not applied."]


def encode(pipe: Any, prompt: str, negative: str, *, guidance: float) -> Encoded:
    """Pipeline arguments for `prompt` and `negative` (the negative only when guidance uses it)."""
    kind = family(pipe)
    positive_chunks, negative_chunks = parse(prompt), parse(negative)
    if kind == "plain" or (_fits_plain(pipe, positive_chunks) and _fits_plain(pipe, negative_chunks)):
        return Encoded({"prompt": plain_text(prompt), "negative_prompt": plain_text(negative) or None})
    import torch

    uses_negative = guidance > 1.0
    with torch.inference_mode():
        if kind == "sdxl":
            return Encoded(_sdxl(pipe, positive_chunks, negative_chunks if uses_negative else None, prompt, negative))
        return Encoded(_sd(pipe, positive_chunks, negative_chunks if uses_negative else None))


def _fits_plain(pipe: Any, chunks: list[Chunk]) -> bool:
    if not is_plain(chunks):
        return False
    text = "".join(fragment.text for fragment in chunks[0])
    return len(pipe.tokenizer(text, truncation=False).input_ids) <= pipe.tokenizer.model_max_length


def _compel(pipe: Any, tokenizer: Any, encoder: Any, kind: str, pooled: bool = False) -> Any:
    """One compel per text encoder and device, kept while the encoder lives (its empty-prompt embedding too)."""
    device = pipe._execution_device
    cached = _COMPELS.get(encoder)
    if cached is not None and cached[0] == device:
        return cached[1]
    from compel import Compel, ReturnedEmbeddingsType, SplitLongTextMode

    returned = (
        ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
        if kind == "sdxl"
        else ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED
    )
    made = Compel(
        tokenizer=tokenizer,
        text_encoder=encoder,
        truncate_long_prompts=False,
        returned_embeddings_type=returned,
        requires_pooled=pooled,
        split_long_text_mode=SplitLongTextMode.PHRASES,
        device=device,
    )
    _COMPELS[encoder] = (device, made)
    return made


def _conditioning(compel: Any, chunks: list[Chunk]) -> Any:
    """One tensor of shape (1, tokens, width): each BREAK chunk encoded on its own, then joined."""
    from compel.prompt_parser import Conjunction, FlattenedPrompt
    from compel.prompt_parser import Fragment as CompelFragment

    prompts = [FlattenedPrompt([CompelFragment(part.text, part.weight) for part in chunk]) for chunk in chunks]
    conditioning, _ = compel.build_conditioning_tensor_for_conjunction(Conjunction(prompts))
    return conditioning


def _sd(pipe: Any, positive: list[Chunk], negative: list[Chunk] | None) -> dict[str, Any]:
    compel = _compel(pipe, pipe.tokenizer, pipe.text_encoder, "sd")
    embeds = _conditioning(compel, positive)
    if negative is None:
        return {"prompt_embeds": embeds}
    empty = compel.conditioning_provider.empty_z
    embeds, negative_embeds = _pad(embeds, _conditioning(compel, negative), empty, empty)
    return {"prompt_embeds": embeds, "negative_prompt_embeds": negative_embeds}


def _sdxl(
    pipe: Any, positive: list[Chunk], negative: list[Chunk] | None, prompt: str, negative_text: str
) -> dict[str, Any]:
    import torch

    first = _compel(pipe, pipe.tokenizer, pipe.text_encoder, "sdxl")
    second = _compel(pipe, pipe.tokenizer_2, pipe.text_encoder_2, "sdxl", pooled=True)
    empty_first, empty_second = first.conditioning_provider.empty_z, second.conditioning_provider.empty_z
    empty = torch.cat([empty_first, empty_second], dim=-1)

    def both(chunks: list[Chunk], text: str) -> tuple[Any, Any]:
        left, right = _pad(_conditioning(first, chunks), _conditioning(second, chunks), empty_first, empty_second)
        pooled = second.conditioning_provider.get_pooled_embeddings([plain_text(text)], device=second.device)
        return torch.cat([left, right], dim=-1), pooled

    embeds, pooled = both(positive, prompt)
    result = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
    force_zeros = getattr(pipe.config, "force_zeros_for_empty_prompt", False)
    if negative is None or (force_zeros and not plain_text(negative_text)):
        return result  # the pipeline uses zeros for an empty negative, at the prompt's length
    negative_embeds, negative_pooled = both(negative, negative_text)
    embeds, negative_embeds = _pad(embeds, negative_embeds, empty, empty)
    return result | {
        "prompt_embeds": embeds,
        "negative_prompt_embeds": negative_embeds,
        "negative_pooled_prompt_embeds": negative_pooled,
    }


def _pad(first: Any, second: Any, first_empty: Any, second_empty: Any) -> tuple[Any, Any]:
    """Both tensors at the longer one's token count, each padded with its own encoder's empty-prompt chunk."""
    import torch

    length = max(first.shape[1], second.shape[1])

    def padded(embeds: Any, empty: Any) -> Any:
        empty = empty.to(embeds.device, embeds.dtype)
        while embeds.shape[1] < length:
            embeds = torch.cat([embeds, empty], dim=1)
        return embeds

    return padded(first, first_empty), padded(second, second_empty)
