"""Write a diffusers Stable Diffusion pipeline as one original-layout (LDM) single-file `.safetensors` checkpoint.

The layout is that of SD 1.x checkpoints as A1111 or Civitai share them: `model.diffusion_model.*` (UNet),
`first_stage_model.*` (VAE), `cond_stage_model.transformer.text_model.*` (CLIP text encoder). This is the
inverse of diffusers' single-file converters (`convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`,
`convert_ldm_clip_checkpoint`), so tests can load a real single file without real weights.
"""

from __future__ import annotations

from pathlib import Path

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
VAE_TOP_LEVEL = {"conv_norm_out": "norm_out"}
VAE_MID_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def unet_key(key: str, config) -> str:
    """The LDM name (without prefix) of one diffusers UNet2DConditionModel state-dict key.

    LDM numbers the UNet's layers flat: `input_blocks.0` is conv_in, then each down block holds
    `layers_per_block` (resnet, attention) rows and one downsampler row (none after the last block); each up
    block holds `layers_per_block + 1` rows, its upsampler sitting in the last row after the attention if any.
    """
    layers = config["layers_per_block"]
    parts = key.split(".")
    if parts[0] == "down_blocks":
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        row = 1 + block * (layers + 1) + index
        if kind == "resnets":
            return f"input_blocks.{row}.0.{_renamed(rest, UNET_RESNET)}"
        if kind == "attentions":
            return f"input_blocks.{row}.1.{'.'.join(rest)}"
        if kind == "downsamplers":  # rest is ["conv", weight|bias]
            return f"input_blocks.{row + layers}.0.op.{rest[1]}"
    elif parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), parts[3:]
        if kind == "resnets":
            return f"middle_block.{2 * index}.{_renamed(rest, UNET_RESNET)}"
        if kind == "attentions":
            return f"middle_block.1.{'.'.join(rest)}"
    elif parts[0] == "up_blocks":
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        row = block * (layers + 1) + index
        if kind == "resnets":
            return f"output_blocks.{row}.0.{_renamed(rest, UNET_RESNET)}"
        if kind == "attentions":
            return f"output_blocks.{row}.1.{'.'.join(rest)}"
        if kind == "upsamplers":
            slot = 2 if "CrossAttn" in config["up_block_types"][block] else 1
            return f"output_blocks.{row + layers}.{slot}.{'.'.join(rest)}"
    else:
        module, _, leaf = key.rpartition(".")
        if module in UNET_TOP_LEVEL:
            return f"{UNET_TOP_LEVEL[module]}.{leaf}"
    raise ValueError(f"no LDM name for UNet key {key!r} (only SD 1.x-shaped UNets are supported)")


def vae_key(key: str, config) -> str:
    """The LDM name (without prefix) of one diffusers AutoencoderKL state-dict key.

    LDM numbers the decoder's up blocks from the lowest resolution: diffusers' `up_blocks.0` is LDM's last `up`.
    """
    parts = key.split(".")
    coder = parts[0]
    if len(parts) < 3 or coder not in ("encoder", "decoder"):
        return key  # quant_conv, post_quant_conv
    if parts[1] in ("down_blocks", "up_blocks"):
        block, kind, rest = int(parts[2]), parts[3], parts[4:]
        level = block if parts[1] == "down_blocks" else len(config["up_block_types"]) - 1 - block
        stage = "down" if parts[1] == "down_blocks" else "up"
        if kind == "resnets":
            return f"{coder}.{stage}.{level}.block.{'.'.join(rest)}".replace("conv_shortcut", "nin_shortcut")
        if kind in ("downsamplers", "upsamplers"):  # rest is ["0", "conv", weight|bias]
            return f"{coder}.{stage}.{level}.{stage}sample.{'.'.join(rest[1:])}"
    elif parts[1] == "mid_block":
        kind, index, rest = parts[2], int(parts[3]), parts[4:]
        if kind == "resnets":
            return f"{coder}.mid.block_{index + 1}.{'.'.join(rest)}".replace("conv_shortcut", "nin_shortcut")
        if kind == "attentions":
            return f"{coder}.mid.attn_{index + 1}.{_renamed(rest, VAE_MID_ATTENTION)}"
    else:
        return f"{coder}.{_renamed(parts[1:], VAE_TOP_LEVEL)}"
    raise ValueError(f"no LDM name for VAE key {key!r}")


def clip_key(key: str) -> str:
    """The LDM name (without prefix) of one transformers CLIPTextModel state-dict key.

    transformers >= 5.6 dropped the `text_model.` level from CLIPTextModel; checkpoints always have it.
    """
    return key if key.startswith("text_model.") else f"text_model.{key}"


def _renamed(parts: list[str], names: dict[str, str]) -> str:
    """`parts` joined with dots, its module path (all but the leaf) renamed through `names` when listed."""
    module, leaf = ".".join(parts[:-1]), parts[-1]
    return f"{names.get(module, module)}.{leaf}"


def ldm_state_dict(pipe) -> dict:
    """All weights of `pipe`'s UNet, VAE and text encoder under their original single-file names."""
    state = {}
    for key, tensor in pipe.unet.state_dict().items():
        state[UNET_PREFIX + unet_key(key, pipe.unet.config)] = tensor
    for key, tensor in pipe.vae.state_dict().items():
        name = vae_key(key, pipe.vae.config)
        if ".mid.attn_" in name and name.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
            tensor = tensor[:, :, None, None]  # diffusers' linear layers are 1x1 convolutions in LDM
        state[VAE_PREFIX + name] = tensor
    for key, tensor in pipe.text_encoder.state_dict().items():
        state[CLIP_PREFIX + clip_key(key)] = tensor
    return state


def save_ldm_checkpoint(pipe, path: Path) -> Path:
    """Write `pipe` as one original-layout `.safetensors` file at `path`."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().contiguous() for name, tensor in ldm_state_dict(pipe).items()}
    save_file(state, str(path))
    return path
