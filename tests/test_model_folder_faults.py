"""Model folders and hub ids that are not what they claim: each refused with a sentence for the user (what is
wrong, what to do), never an internal error of diffusers or Python; real diffusers loads of the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from dreamtray.engine.server.models import ModelError, load_pipeline, resolve_model

INTERNAL = ("AttributeError", "TypeError", "issubclass", "object has no attribute", "Traceback", "unpack")


def model_copy(tiny_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    return folder


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def load(folder: Path, tmp_path: Path):
    return load_pipeline(resolve_model(str(folder)), "float32", tmp_path / "cache", lambda e: None)


NOT_A_PIPELINE = "as its pipeline (`_class_name` in model_index.json), which is no diffusers pipeline"
NOT_A_COMPONENT = "which is no class of diffusers or transformers"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"_class_name": "__init__"}, NOT_A_PIPELINE),
        ({"_class_name": "utils"}, NOT_A_PIPELINE),
        ({"_class_name": "AutoencoderKL"}, NOT_A_PIPELINE),
        ({"_class_name": "DiffusionPipeline"}, NOT_A_PIPELINE),
        ({"_class_name": ["StableDiffusionPipeline"]}, NOT_A_PIPELINE),
        ({"_class_name": 5}, NOT_A_PIPELINE),
        ({"_class_name": "FuturePipeline"}, "needs FuturePipeline, which this version of diffusers has not; upgrade"),
        ({"unet": ["os", "system"]}, NOT_A_COMPONENT),
        ({"unet": ["diffusers", "__init__"]}, NOT_A_COMPONENT),
        ({"unet": ["diffusers", "utils"]}, NOT_A_COMPONENT),
        ({"unet": ["diffusers", "UNet2DConditionModel", "x"]}, NOT_A_COMPONENT),
        ({"unet": ["no_such_library", "X"]}, NOT_A_COMPONENT),
        ({"unet": "x"}, NOT_A_COMPONENT),
    ],
    ids=lambda v: ascii(v)[:40],
)
def test_a_model_index_naming_no_pipeline_or_component_is_refused_in_words(tiny_folder, tmp_path, changes, expected):
    folder = model_copy(tiny_folder, tmp_path)
    edit_json(folder / "model_index.json", **changes)
    with pytest.raises(ModelError) as refused:
        load(folder, tmp_path)
    message = str(refused.value)
    assert expected in message and str(folder) in message, message
    assert not any(word in message for word in INTERNAL), message


@pytest.mark.parametrize(
    "changes", [{"in_channels": "x"}, {"down_block_types": ["__init__"]}, {"cross_attention_dim": None}]
)
def test_a_component_config_that_diffusers_cannot_build_is_refused_in_words(tiny_folder, tmp_path, changes):
    folder = model_copy(tiny_folder, tmp_path)
    edit_json(folder / "unet" / "config.json", **changes)
    with pytest.raises(ModelError) as refused:
        load(folder, tmp_path)
    message = str(refused.value)
    assert f"The model in {folder} could not be loaded: " in message and "copy the model again" in message, message
    assert not any(word in message for word in ("Traceback", "object has no attribute")), message


class RunsCode:
    def __reduce__(self):
        return (print, ("CODE RAN",))


def test_a_pickle_weights_file_with_code_in_it_is_named_as_such_not_as_damaged(tiny_folder, tmp_path, capfd):
    folder = model_copy(tiny_folder, tmp_path)
    next((folder / "unet").glob("*.safetensors")).unlink()
    torch.save({"weight": RunsCode()}, folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelError) as refused:
        load(folder, tmp_path)
    message = str(refused.value)
    assert "unet/diffusion_pytorch_model.bin is a pickle file that holds more than tensors" in message, message
    assert "damaged" not in message and ".safetensors weights" in message
    assert "CODE RAN" not in capfd.readouterr().out


@pytest.mark.parametrize("spec", ["owner/na me", "owner/name\n", "owner/..", "owner/a--b", "owner/-x", "owner/x\u202e"])
def test_a_hub_id_the_hub_cannot_have_is_refused_before_any_request(spec):
    with pytest.raises(ModelError, match="is neither a folder here nor a model id the Hugging Face hub can have"):
        resolve_model(spec)
