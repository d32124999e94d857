"""A model in optimum-intel's export layout (`optimum-cli export openvino`), served by the loopback hub: quality
fast downloads its OpenVINO modules, configs and tokenizer only, and runs them as they are, with no torch weights
fetched, read or loaded; a local folder in that layout runs the same way, and asking it for torch says why not.
A preset's ready-made OpenVINO repo (and its TAESD decoder's) is what `fast` downloads for that preset."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_engine import pixels
from hub_server import HubServer
from openvino_export import build_decoder_export, build_export, with_tiny_vae

from dreamtray.engine.presets import PRESETS
from dreamtray.engine.server.hardware import Machine
from dreamtray.engine.server.models import ModelError
from dreamtray.engine.server.runner import Runner
from dreamtray.request import Request

HERE = Path(__file__).parent
REPO = "someone/tiny-openvino"
OPENVINO_CPU = Machine(cpu_cores=2, ram_gb=24, ram_free_gb=20, openvino=True)
FAST = Request(prompt="a red fox", seed=5, steps=2, guidance=0.0, width=64, height=64, quality="fast")


@pytest.fixture(scope="module")
def export(tmp_path_factory, tiny_folder) -> Path:
    return build_export(tiny_folder, tmp_path_factory.mktemp("export") / "tiny-openvino")


@pytest.fixture(scope="module")
def decoder_export(tmp_path_factory, model_cache) -> Path:
    """A TAESD decoder in the layout of FastSD CPU's rupeshs/taesd-ov (built from the tiny TAESD)."""
    from dreamtray.engine.server.taesd import ensure_tiny_taesd_folder

    return build_decoder_export(ensure_tiny_taesd_folder(model_cache), tmp_path_factory.mktemp("taesd") / "taesd-ov")


@pytest.fixture(scope="module")
def tiny_vae_export(tmp_path_factory, tiny_folder, model_cache) -> Path:
    """The tiny model with a tiny VAE as its own (SDXS's layout), exported: its vae_decoder is an AutoencoderTiny."""
    from dreamtray.engine.server.taesd import ensure_tiny_taesd_folder

    root = tmp_path_factory.mktemp("tiny-vae")
    folder = with_tiny_vae(tiny_folder, ensure_tiny_taesd_folder(model_cache), root / "tiny-vae")
    return build_export(folder, root / "tiny-vae-openvino")


def run_fast(hub: HubServer, model: str, tmp_path: Path, *init: str) -> tuple[dict, list[str]]:
    """One `fast` job of `model` in a fresh process against `hub` (image-to-image from the picture `init` names):
    its report, and the files the hub sent."""
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(HERE / "openvino_export_process.py"), str(tmp_path / "cache"), model, str(out), *init],
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), [entry.file for entry in hub.downloads()]


def repo_of(path: str) -> str:
    """The repo a hub download came from: `/{repo}/resolve/...`, or `/lfs/{repo}/{sha}` for LFS files."""
    return "/".join(path.lstrip("/").removeprefix("lfs/").split("/")[:2])


def assert_ran_without_torch_weights(report: dict, name: str) -> None:
    assert report["light"] and not report["warnings"]
    assert f"Read {name}'s OpenVINO modules as exported (no torch weights)" in report["messages"]
    assert not any(m.startswith(("Converting", "Quantizing", "Calibrating")) for m in report["messages"])
    weights = [path for path in report["opened"] if path.endswith((".safetensors", ".bin", ".ckpt"))]
    assert not weights, weights  # OpenVINO reads its .bin files itself, not through Python's open
    assert report["torch_parameters"] == 0  # no torch module holds a weight
    assert "openvino" in report["modules"] and "torch" in report["modules"]  # the worker still imports torch
    assert base64.b64decode(report["png"]).startswith(b"\x89PNG")


def test_an_export_served_by_the_hub_runs_fast_with_no_torch_weights(export, tmp_path):
    with HubServer() as hub:
        hub.add_folder(REPO, export, lfs=".bin")
        report, fetched = run_fast(hub, REPO, tmp_path)
    modules = ["text_encoder", "unet", "vae_decoder"]
    assert sorted(f for f in set(fetched) if f.endswith(".bin")) == [f"{m}/openvino_model.bin" for m in modules]
    assert not [f for f in fetched if f.endswith((".safetensors", ".ckpt", ".pt"))]
    assert "vae_encoder/openvino_model.xml" not in fetched  # fast draws no init image: the encoder is not needed
    assert_ran_without_torch_weights(report, REPO)


@pytest.mark.parametrize("preset", ["sd-turbo", "sdxs"])
def test_a_preset_downloads_its_ready_made_openvino_repo_for_fast(
    preset, export, tiny_vae_export, decoder_export, tmp_path
):
    files = PRESETS[preset].fast_files
    with HubServer() as hub:  # serves only the ready-made repos: asking for the torch weights would fail
        hub.add_folder(files.repo, export if files.decoder else tiny_vae_export, lfs=".bin")
        if files.decoder:
            hub.add_folder(files.decoder, decoder_export, lfs=".bin")
        report, fetched = run_fast(hub, preset, tmp_path)
        asked = {entry.path.split("/revision/")[0].removeprefix("/api/models/") for entry in hub.api_calls()}
        weights = {(repo_of(entry.path), entry.file) for entry in hub.downloads() if entry.file.endswith(".bin")}
    assert asked == {files.repo, files.decoder} - {None}, "only the ready-made repos are asked for"
    # With a TAESD decoder of its own (SD-Turbo's), the export's full VAE decoder is not fetched.
    decoder_repo = files.decoder or files.repo
    expected = {(files.repo, "text_encoder/openvino_model.bin"), (files.repo, "unet/openvino_model.bin")}
    assert weights == expected | {(decoder_repo, "vae_decoder/openvino_model.bin")}
    assert not [f for f in fetched if f.endswith((".safetensors", ".ckpt", ".pt"))]
    assert_ran_without_torch_weights(report, preset)


def test_an_init_image_on_a_ready_made_repo_is_encoded_by_taesd_on_openvino(
    export, decoder_export, model_cache, tmp_path
):
    """Ready-made repos hold no TAESD encoder: image-to-image (a refine, an init-image series) fetches the family's
    TAESD (a few MB), converts its encoder, and runs on the export's modules: no torch weights of the model."""
    from PIL import Image

    from dreamtray.engine.server.taesd import ensure_tiny_taesd_folder

    preset = PRESETS["sd-turbo"]
    picture = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (200, 40, 30)).save(picture)
    with HubServer() as hub:
        hub.add_folder(preset.fast_files.repo, export, lfs=".bin")
        hub.add_folder(preset.fast_files.decoder, decoder_export, lfs=".bin")
        hub.add_folder(preset.taesd, ensure_tiny_taesd_folder(model_cache), lfs=".safetensors")
        report, fetched = run_fast(hub, "sd-turbo", tmp_path, str(picture))
        asked = {entry.path.split("/revision/")[0].removeprefix("/api/models/") for entry in hub.api_calls()}
    assert asked == {preset.fast_files.repo, preset.fast_files.decoder, preset.taesd}, "not the torch weights"
    assert [f for f in fetched if f.endswith(".safetensors")] == ["diffusion_pytorch_model.safetensors"]  # TAESD's
    assert report["light"] and not report["warnings"], report["warnings"]
    assert any(m.startswith("Converting the TAESD encoder of sd-turbo") for m in report["messages"])
    assert base64.b64decode(report["png"]).startswith(b"\x89PNG")


def test_a_local_export_runs_fast_the_same_in_any_process(export, tmp_path):
    first = Runner(cache_dir=tmp_path, default_model=str(export), machine=OPENVINO_CPU).generate(FAST)
    again = Runner(cache_dir=tmp_path, default_model=str(export), machine=OPENVINO_CPU).generate(FAST)
    assert pixels(first.images[0]) == pixels(again.images[0])
    assert not first.warnings
    assert not any(export.rglob("compiled")), "compiled programs went into the export folder"


def test_asking_an_export_for_torch_says_it_holds_only_openvino_modules(export, tmp_path):
    runner = Runner(cache_dir=tmp_path, default_model=str(export), machine=OPENVINO_CPU)
    with pytest.raises(ModelError, match="holds only OpenVINO modules .* Ask for quality fast"):
        runner.generate(FAST.model_copy(update={"quality": "balanced"}))


def test_a_pinned_ready_made_repo_is_fetched_at_its_commit_and_a_wrong_pin_fetches_nothing(
    tiny_vae_export, tmp_path, monkeypatch
):
    from dataclasses import replace

    from huggingface_hub import constants

    from dreamtray.engine.presets import FastFiles
    from dreamtray.engine.server.models import ready_made, resolve_model

    source = resolve_model("sdxs")
    repo = source.preset.fast_files.repo

    def pinned_to(commit: str):
        return replace(source, preset=replace(source.preset, fast_files=FastFiles(repo, commit)))

    with HubServer() as hub:
        for name, value in (("ENDPOINT", hub.url), ("HF_HUB_CACHE", str(tmp_path / "hub")), ("HF_HUB_OFFLINE", False)):
            monkeypatch.setattr(constants, name, value)
        commit = hub.add_folder(repo, tiny_vae_export, lfs=".bin").commit
        export, decoder = ready_made(pinned_to(commit), tmp_path / "cache", lambda event: None)
        asked = [entry.path for entry in hub.api_calls() if entry.path.startswith("/api/models/")]
        assert asked == [f"/api/models/{repo}/revision/{commit}"]
        assert (export / "unet" / "openvino_model.bin").is_file() and decoder is None
        before = len(hub.downloads())
        assert ready_made(pinned_to("0" * 40), tmp_path / "cache-2", lambda event: None) is None
        assert len(hub.downloads()) == before, "nothing is fetched at a commit the hub does not have"
