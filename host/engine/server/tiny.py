"""The `tiny` model: a random-weight pipeline in Stable Diffusion's shape, built offline from configs.

It runs the real diffusers classes end to end (tokenizer, CLIP text encoder, UNet, scheduler, a VAE that
downsamples 8x like the real one) in well under a second at 512 px on a CPU. Its weights are random, so it
draws noise: it is a plumbing check for installs and tests, never presented as real output.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_VERSION = 1
"""Bumped whenever the shapes below change, so a cached build is rebuilt."""
SEED = 20240611


def _byte_level_vocab() -> dict[str, int]:
    """CLIP's byte-to-unicode alphabet, each symbol alone and at a word's end: tokenizes any text, no merges."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    symbols = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(shifted))]
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


def build_tiny_pipeline():
    """A fresh StableDiffusionPipeline with deterministic random weights (the same in every process)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = _byte_level_vocab()
    torch.manual_seed(SEED)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        )
    )
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        sample_size=512,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def ensure_tiny_folder(cache_dir: Path) -> Path:
    """The tiny model saved as a diffusers folder under `cache_dir`, built once and then reused."""
    folder = cache_dir / f"tiny-v{TINY_VERSION}"
    marker = folder / "model_index.json"
    if marker.exists():
        return folder
    from filelock import FileLock

    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f"tiny-v{TINY_VERSION}.lock")):
        if not marker.exists():
            staging = cache_dir / f"tiny-v{TINY_VERSION}.partial"
            build_tiny_pipeline().save_pretrained(staging, safe_serialization=True)
            index = json.loads((staging / "model_index.json").read_text())
            index["_dreamtray_note"] = "random weights: a plumbing check, not a real model"
            (staging / "model_index.json").write_text(json.dumps(index, indent=2))
            staging.rename(folder)
    return folder
