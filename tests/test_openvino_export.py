"""A model in optimum-intel's export layout (`optimum-cli export openvino`), served by the loopback hub: quality
fast downloads its OpenVINO modules, configs and tokenizer only, and runs them as they are, with no torch weights
fetched, read or loaded; a local folder in that layout runs the same way, and asking it for torch says why not."""

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
from openvino_export import build_export

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


def test_an_export_served_by_the_hub_runs_fast_with_no_torch_weights(export, tmp_path):
    with HubServer() as hub:
        hub.add_folder(REPO, export, lfs=".bin")
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        env.pop("HF_HUB_OFFLINE", None)
        out = tmp_path / "out.json"
        done = subprocess.run(
            [sys.executable, str(HERE / "openvino_export_process.py"), str(tmp_path / "cache"), REPO, str(out)],
            env=env,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        fetched = sorted({entry.file for entry in hub.downloads()})
    report = json.loads(out.read_text())
    modules = ["text_encoder", "unet", "vae_decoder"]
    assert [f for f in fetched if f.endswith(".bin")] == [f"{m}/openvino_model.bin" for m in modules]
    assert not [f for f in fetched if f.endswith((".safetensors", ".ckpt", ".pt"))]
    assert "vae_encoder/openvino_model.xml" not in fetched  # fast draws no init image: the encoder is not needed
    assert report["light"] and not report["warnings"]
    assert f"Read {REPO}'s OpenVINO modules as exported (no torch weights)" in report["messages"]
    assert not any(m.startswith(("Converting", "Quantizing", "Calibrating")) for m in report["messages"])
    weights = [path for path in report["opened"] if path.endswith((".safetensors", ".bin", ".ckpt"))]
    assert not weights, weights  # OpenVINO reads its .bin files itself, not through Python's open
    assert report["torch_parameters"] == 0  # no torch module holds a weight
    assert "openvino" in report["modules"] and "torch" in report["modules"]  # the worker still imports torch
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
