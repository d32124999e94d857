"""`tiny` written as one original-layout `.safetensors` file loads offline through `from_single_file`, unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ldm_checkpoint import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX, ldm_state_dict, save_ldm_checkpoint

from dreamtray.engine.server.tiny import ensure_tiny_folder

MODULES = ("unet", "vae", "text_encoder")
WEIGHT_AND_BIAS = ("weight", "bias")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny diffusers folder, its pipeline, and the same weights written as one single-file checkpoint."""
    from diffusers import StableDiffusionPipeline

    folder = ensure_tiny_folder(tmp_path_factory.mktemp("models"))
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    checkpoint = save_ldm_checkpoint(pipe, folder.parent / "tiny.safetensors")
    return folder, pipe, checkpoint


@pytest.fixture(scope="module")
def single_file_pipe(tiny):
    from diffusers import StableDiffusionPipeline

    folder, _, checkpoint = tiny
    return StableDiffusionPipeline.from_single_file(str(checkpoint), config=str(folder), local_files_only=True)


def read_checkpoint(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def names_under(state: dict, prefix: str) -> set[str]:
    return {key.removeprefix(prefix) for key in state if key.startswith(prefix)}


def layer_names(*layers: str) -> set[str]:
    return {f"{layer}.{kind}" for layer in layers for kind in WEIGHT_AND_BIAS}


def test_checkpoint_uses_the_original_layout(tiny):
    _, pipe, checkpoint = tiny
    state = read_checkpoint(checkpoint)

    assert len(state) == sum(len(getattr(pipe, name).state_dict()) for name in MODULES)
    assert all(key.startswith((UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX)) for key in state)
    diffusers_names = ("down_blocks", "up_blocks", "mid_block", "resnets", "attentions", "samplers")
    assert [key for key in state if any(name in key for name in diffusers_names)] == []
    assert state["model.diffusion_model.input_blocks.0.0.weight"].shape == (32, 4, 3, 3)
    assert "model.diffusion_model.input_blocks.2.0.op.weight" in state  # first down block's downsampler
    assert "model.diffusion_model.output_blocks.1.1.conv.weight" in state  # upsampler of an up block without attention
    assert "model.diffusion_model.output_blocks.3.1.proj_in.weight" in state
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in state  # LDM counts decoder levels upwards
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in state
    assert state["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (16, 16, 1, 1)
    assert state["first_stage_model.decoder.mid.attn_1.proj_out.weight"].shape == (16, 16, 1, 1)
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in state


def test_checkpoint_layers_have_their_original_names(tiny):
    """diffusers' loader accepts some diffusers names inside LDM rows too, so the names are checked one by one."""
    state = read_checkpoint(tiny[2])

    unet_resnet = names_under(state, f"{UNET_PREFIX}input_blocks.3.0.")
    assert unet_resnet == layer_names(
        "in_layers.0", "in_layers.2", "emb_layers.1", "out_layers.0", "out_layers.3", "skip_connection"
    )
    assert layer_names("time_embed.0", "time_embed.2", "out.0", "out.2") <= names_under(state, UNET_PREFIX)
    vae_resnet = names_under(state, f"{VAE_PREFIX}encoder.down.1.block.0.")
    assert vae_resnet == layer_names("norm1", "conv1", "norm2", "conv2", "nin_shortcut")
    assert names_under(state, f"{VAE_PREFIX}decoder.mid.attn_1.") == layer_names("norm", "q", "k", "v", "proj_out")
    assert layer_names("norm_out", "conv_out") <= names_under(state, f"{VAE_PREFIX}decoder.")


def test_sd15_shaped_models_get_the_sd15_key_names():
    """At real SD 1.5 sizes (on the meta device: no memory) the names and counts are those of SD 1.x checkpoints."""
    from types import SimpleNamespace

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        sd15 = SimpleNamespace(
            unet=UNet2DConditionModel(),  # the defaults are SD 1.x's UNet
            vae=AutoencoderKL(
                block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2,
            ),
            text_encoder=CLIPTextModel(
                CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
            ),
        )
    state = ldm_state_dict(sd15)

    assert (len(names_under(state, UNET_PREFIX)), len(names_under(state, VAE_PREFIX))) == (686, 248)
    assert len(names_under(state, CLIP_PREFIX)) == 196  # SD 1.x files add the position_ids buffer: 197
    downsamplers = {key for key in names_under(state, UNET_PREFIX) if ".op." in key}
    upsamplers = {key for key in names_under(state, UNET_PREFIX) if key.endswith(".conv.weight")}
    assert downsamplers == layer_names("input_blocks.3.0.op", "input_blocks.6.0.op", "input_blocks.9.0.op")
    assert upsamplers == {f"output_blocks.{row}.conv.weight" for row in ("2.1", "5.2", "8.2")}
    assert "middle_block.1.transformer_blocks.0.attn2.to_k.weight" in names_under(state, UNET_PREFIX)
    assert "decoder.up.3.block.2.conv2.weight" in names_under(state, VAE_PREFIX)
    assert infer_diffusers_model_type(state) == "v1"


def test_diffusers_converters_give_back_every_weight_exactly(tiny):
    """diffusers' own LDM converters map the file back to each model's state dict: no key lost, none left over."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    _, pipe, checkpoint = tiny
    state = read_checkpoint(checkpoint)
    clip = convert_ldm_clip_checkpoint(state)
    if not hasattr(pipe.text_encoder, "text_model"):  # transformers >= 5.6 dropped that level; diffusers strips it too
        clip = {key.removeprefix("text_model."): value for key, value in clip.items()}
    converted = {
        "unet": convert_ldm_unet_checkpoint(state, pipe.unet.config),
        "vae": convert_ldm_vae_checkpoint(state, pipe.vae.config),
        "text_encoder": clip,
    }
    for name in MODULES:
        original = getattr(pipe, name).state_dict()
        assert converted[name].keys() == original.keys(), name
        assert all(torch.equal(converted[name][key], original[key]) for key in original), name


def test_from_single_file_loads_every_weight_offline(tiny, single_file_pipe):
    _, pipe, _ = tiny
    for name in MODULES:
        original, loaded = getattr(pipe, name).state_dict(), getattr(single_file_pipe, name).state_dict()
        assert loaded.keys() == original.keys(), name
        unequal = [key for key in original if not torch.equal(loaded[key], original[key])]
        assert unequal == [], name
    assert dict(single_file_pipe.scheduler.config) == dict(pipe.scheduler.config)


def test_from_single_file_draws_the_same_pixels(tiny, single_file_pipe):
    _, pipe, _ = tiny

    def draw(p) -> np.ndarray:
        generator = torch.Generator().manual_seed(7)
        image = p("a lighthouse at dusk", height=64, width=64, num_inference_steps=2, generator=generator).images[0]
        return np.asarray(image)

    expected, actual = draw(pipe), draw(single_file_pipe)
    assert expected.shape == (64, 64, 3)
    assert expected.std() > 10  # a real noisy picture, not a flat one that would match anything flat
    assert np.array_equal(actual, expected)
