"""Random-weight pipelines in the exact shapes of the real models, built from configs written here.

Speed and memory depend on shapes, not on weight values, so these stand in for SD-Turbo, SDXS and SDXL-Turbo
where the real weights cannot be downloaded. The numbers are the published configs of
stabilityai/sd-turbo (SD 2.1 UNet, OpenCLIP ViT-H/14 text tower, SD VAE) and stabilityai/sdxl-turbo
(SDXL UNet, CLIP ViT-L/14 + OpenCLIP ViT-bigG/14 text towers, SDXL VAE). Their images are noise.

IDKiro/sdxs-512-0.9's own config files could not be read from here; its shape is built from what public code
that loads its real weights does (stable-diffusion.cpp's SDXS-0.9 U-Net: SD 2.x's U-Net with one res block per
level, the levels 320/640/1280 all with cross-attention, no middle block, no fourth level, 64-channel heads but a
single 320-channel head at the first level; a 1024-wide text context) and from the SDXS paper and repository
(0.32 B U-Net parameters, which this shape has: 0.327 B; its own tiny decoder, loaded as diffusers'
AutoencoderTiny, whose default shape has the paper's 1.2 M decoder parameters). See docs/models.md.

FLUX.1-schnell (a 12 B transformer and a 4.7 B T5-XXL encoder: ~33 GB in bf16, ~67 GB in fp32) is not built:
it needs a machine with at least ~48 GB of RAM or VRAM to hold once, twice that to compare side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

SEED = 1234
VERSION = 1
"""Bumped whenever a config below changes, so that a cached folder is rebuilt."""

SD_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
)

EULER_A_TRAILING = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
    timestep_spacing="trailing",
    prediction_type="epsilon",
)


BOS, EOS = 512, 513
"""Ids of <|startoftext|> and <|endoftext|> in the byte-level vocabulary of `_tokenizer()`."""


def _tokenizer(max_length: int = 77):
    """An offline byte-level CLIP tokenizer (ids fit in any CLIP vocabulary; tokenization cost is negligible)."""
    from transformers import CLIPTokenizer

    from dreamtray.engine.server.tiny import _byte_level_vocab

    vocab = _byte_level_vocab()
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _clip_text(cls_name: str, *, hidden: int, intermediate: int, heads: int, layers: int, act: str, projection: int):
    import transformers
    from transformers import CLIPTextConfig

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        hidden_act=act,
        projection_dim=projection,
        max_position_embeddings=77,
        layer_norm_eps=1e-5,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=EOS,
    )
    return getattr(transformers, cls_name)(config)


def build_sd_turbo():
    """StableDiffusionPipeline shaped like stabilityai/sd-turbo (865 M UNet, 340 M text encoder, 84 M VAE)."""
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        attention_head_dim=(5, 10, 20, 20),
        cross_attention_dim=1024,
        use_linear_projection=True,
        norm_num_groups=32,
        flip_sin_to_cos=True,
        freq_shift=0,
    )
    text_encoder = _clip_text(
        "CLIPTextModel", hidden=1024, intermediate=4096, heads=16, layers=23, act="gelu", projection=512
    )
    vae = AutoencoderKL(sample_size=768, scaling_factor=0.18215, **SD_VAE)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_tokenizer(),
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(**EULER_A_TRAILING),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sdxs_unet():
    """SDXS-512-0.9's UNet as public loaders of its weights build it (0.327 B parameters; module docstring)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
        mid_block_type=None,
        block_out_channels=(320, 640, 1280),
        layers_per_block=1,
        attention_head_dim=(1, 10, 20),  # diffusers' legacy name: heads per level (one of 320, then 64 each)
        cross_attention_dim=1024,
        use_linear_projection=True,
        norm_num_groups=32,
        flip_sin_to_cos=True,
        freq_shift=0,
    )


def build_sdxs():
    """StableDiffusionPipeline shaped like IDKiro/sdxs-512-0.9 (327 M UNet, SD-Turbo's 340 M text encoder, its
    own tiny VAE in TAESD's shape as `vae`): one step, guidance 0, 512 px."""
    from diffusers import AutoencoderTiny, EulerDiscreteScheduler, StableDiffusionPipeline

    text_encoder = _clip_text(
        "CLIPTextModel", hidden=1024, intermediate=4096, heads=16, layers=23, act="gelu", projection=512
    )
    return StableDiffusionPipeline(
        vae=AutoencoderTiny(),
        text_encoder=text_encoder,
        tokenizer=_tokenizer(),
        unet=sdxs_unet(),
        scheduler=EulerDiscreteScheduler(**EULER_A_TRAILING),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sdxl_unet():
    """SDXL's UNet (2.57 B parameters), as in stabilityai/sdxl-turbo."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
        norm_num_groups=32,
        flip_sin_to_cos=True,
        freq_shift=0,
    )


def build_sdxl_turbo():
    """StableDiffusionXLPipeline shaped like stabilityai/sdxl-turbo (2.57 B UNet, 123 M + 695 M text encoders)."""
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

    unet = sdxl_unet()
    text_encoder = _clip_text(
        "CLIPTextModel", hidden=768, intermediate=3072, heads=12, layers=12, act="quick_gelu", projection=768
    )
    text_encoder_2 = _clip_text(
        "CLIPTextModelWithProjection", hidden=1280, intermediate=5120, heads=20, layers=32, act="gelu", projection=1280
    )
    vae = AutoencoderKL(sample_size=1024, scaling_factor=0.13025, force_upcast=True, **SD_VAE)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=_tokenizer(),
        tokenizer_2=_tokenizer(),
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(**EULER_A_TRAILING),
        force_zeros_for_empty_prompt=True,
    )


def build_tiny_sdxl():
    """StableDiffusionXLPipeline with SDXL's structure (two text towers, text-time conditioning) in a few MB.

    Not a real model's shape: it runs the SDXL code paths of the benchmarks in seconds, as `tiny` does for SD.
    """
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        cross_attention_dim=64,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
        norm_num_groups=8,
    )
    text = dict(hidden=32, intermediate=64, heads=4, layers=2, projection=32)
    vae = AutoencoderKL(
        sample_size=512,
        scaling_factor=0.13025,
        force_upcast=True,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=_clip_text("CLIPTextModel", act="quick_gelu", **text),
        text_encoder_2=_clip_text("CLIPTextModelWithProjection", act="gelu", **text),
        tokenizer=_tokenizer(),
        tokenizer_2=_tokenizer(),
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(**EULER_A_TRAILING),
        force_zeros_for_empty_prompt=True,
    )


BUILDERS = {
    "sd-turbo": build_sd_turbo,
    "sdxs": build_sdxs,
    "sdxl-turbo": build_sdxl_turbo,
    "tiny-sdxl": build_tiny_sdxl,
}


def ensure_folder(name: str, cache_dir: Path, dtype_name: str = "float16", device: str = "cpu") -> Path:
    """The shaped pipeline `name` saved as a diffusers folder in `dtype_name`, built once and then reused.

    Weights are created directly in `dtype_name` (half the RAM of fp32) on `device` (a GPU fills them much
    faster) and are seeded, so that builds on one device are the same.
    """
    import torch

    folder = cache_dir / f"{name}-shaped-v{VERSION}-{dtype_name}"
    if (folder / "model_index.json").exists():
        return folder
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(SEED)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.no_grad(), torch.device(device):
            pipe = BUILDERS[name]()
    finally:
        torch.set_default_dtype(previous)
    staging = cache_dir / f"{folder.name}.partial"
    pipe.save_pretrained(staging, safe_serialization=True)
    index = json.loads((staging / "model_index.json").read_text())
    index["_dreamtray_note"] = f"random weights in the shape of {name}: for speed and memory figures only"
    (staging / "model_index.json").write_text(json.dumps(index, indent=2))
    staging.rename(folder)
    return folder
