"""Prompt expansion: a random-weight GPT-2 in the real model's shape (tests/tiny_text_model.py) grows prompts
in the engine's expansion process; `dreamtray expand`, `generate --expand`, the PNG's metadata, `show` and
`generate --from` are run for real."""

from __future__ import annotations

import json
import shutil

import pytest
from cli_env import DreamtrayHome
from hub_server import HubServer
from tiny_text_model import build_text_model

from dreamtray.engine.download_progress import human
from dreamtray.images.metadata import read_metadata


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    return build_text_model(tmp_path_factory.mktemp("text-model") / "magicprompt-shaped")


@pytest.fixture(scope="module")
def home(tmp_path_factory, text_model):
    home = DreamtrayHome.create(tmp_path_factory.mktemp("expand-home"))
    config = home.root / "config" / "dreamtray" / "config.toml"
    config.write_text(config.read_text() + f'expansion_model = "{text_model}"\n')
    yield home
    home.stop_engine()


def test_one_seed_gives_one_expansion_that_starts_with_the_users_words(text_model, tmp_path):
    from dreamtray.engine.server.expansion import _model, expand_text

    model, tokenizer = _model(str(text_model), tmp_path, [])  # the stepper of the engine's choice
    first = expand_text(model, tokenizer, "a fox  in snow", 7, 12)
    assert first == expand_text(model, tokenizer, "a fox in snow", 7, 12)
    assert first.startswith("a fox in snow ") and len(first) > len("a fox in snow ")
    assert expand_text(model, tokenizer, "a fox in snow", 8, 12) != first
    assert "\n" not in first


def test_expand_command_is_deterministic_per_seed(home):
    runs = [home.run("expand", "a fox in snow", "--seed", "7", "--json", check=True) for _ in range(2)]
    first, again = (json.loads(run.stdout) for run in runs)
    assert first["expansion"] == again["expansion"] and first["seed"] == 7
    assert first["words"] == "a fox in snow" and first["expansion"].startswith("a fox in snow ")
    other = json.loads(home.run("expand", "a fox in snow", "--seed", "8", "--json", check=True).stdout)
    assert other["expansion"] != first["expansion"]
    plain = home.run("expand", "a fox in snow", "--seed", "7", check=True)
    assert plain.stdout.strip() == first["expansion"] and "seed 7" in plain.stderr


def test_generate_expand_keeps_the_words_and_the_expansion_apart_and_from_repeats_it(home, tmp_path):
    expected = json.loads(home.run("expand", "a lighthouse", "--seed", "11", "--json", check=True).stdout)
    made = home.run("generate", "a lighthouse", "--expand", "--seed", "11", "--json", check=True)
    answer = json.loads(made.stdout)
    assert f"expanded: {expected['expansion']}" in made.stderr
    assert answer["request"]["prompt"] == expected["expansion"]
    assert answer["request"]["expanded_from"] == "a lighthouse"
    [image] = answer["images"]
    metadata = read_metadata(image)
    assert metadata.request.expanded_from == "a lighthouse" and metadata.request.prompt == expected["expansion"]
    assert metadata.parameters.extra["Expanded from"] == "a lighthouse"
    shown = home.run("show", image, check=True).stdout
    assert "Your words: a lighthouse" in shown and f"Expansion: {expected['expansion']}" in shown

    again = json.loads(home.run("generate", "--from", image, "--json", check=True).stdout)
    assert again["request"]["prompt"] == expected["expansion"] and again["request"]["expanded_from"] == "a lighthouse"
    from PIL import Image, ImageChops

    with Image.open(image) as first, Image.open(again["images"][0]) as second:
        assert ImageChops.difference(first.convert("RGB"), second.convert("RGB")).getbbox() is None


def test_a_missing_expansion_model_is_a_clear_message(home, tmp_path):
    other = DreamtrayHome(home.root, {**home.env, "DREAMTRAY_CONFIG": str(tmp_path / "config.toml")})
    (tmp_path / "config.toml").write_text(f'model = "tiny"\nexpansion_model = "{tmp_path / "nothing"}"\n')
    result = other.run("expand", "a fox", "--seed", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'nothing'} is not a text model folder" in result.stderr


def hub_home(root, hub: HubServer, repo: str) -> DreamtrayHome:
    """A home whose engine fetches from the loopback hub into `root/hf` (no proxy), expanding with `repo`."""
    home = DreamtrayHome.create(root)
    for key in [k for k in home.env if k.upper().endswith("_PROXY") or k.startswith("HF_")]:
        del home.env[key]
    home.env.update(HF_ENDPOINT=hub.url, HF_HOME=str(root / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    config = root / "config" / "dreamtray" / "config.toml"
    config.write_text(f'model = "tiny"\nexpansion_model = "{repo}"\n')
    return home


def test_the_expansion_model_downloads_like_any_model_size_first_then_works_offline(tmp_path, text_model):
    repo = "dreamtray/magicprompt-tiny"
    with HubServer() as hub:
        files = hub.add_folder(repo, text_model).files
        home = hub_home(tmp_path, hub, repo)
        try:
            first = home.run("expand", "a fox in snow", "--seed", "3", "--json", check=True)
            size = sum(len(file.data) for file in files.values())
            destination = tmp_path / "hf" / "hub" / "models--dreamtray--magicprompt-tiny"
            assert f"Downloading {repo}: {human(size)} in {len(files)} files, into {destination}" in first.stderr
            assert f"Downloaded {repo} ({human(size)} in " in first.stderr
            for path, file in files.items():
                assert [entry.sent for entry in hub.downloads(path)] == [len(file.data)], path
            asked = len(hub.log)
            home.stop_engine()  # a fresh engine: nothing remembered in memory
            home.env["HF_HUB_OFFLINE"] = "1"
            again = home.run("expand", "a fox in snow", "--seed", "3", "--json", check=True)
            assert "Downloading" not in again.stderr and len(hub.log) == asked, "cached: the hub is not asked"
            assert json.loads(again.stdout)["expansion"] == json.loads(first.stdout)["expansion"]
        finally:
            home.stop_engine()


def test_a_repo_with_only_pickle_weights_gets_a_clear_message(tmp_path, text_model):
    pickled = tmp_path / "pickled"
    shutil.copytree(text_model, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded, whatever it holds")
    with HubServer() as hub:
        hub.add_folder("dreamtray/pickled", pickled)
        home = hub_home(tmp_path / "home", hub, "dreamtray/pickled")
        try:
            result = home.run("expand", "a fox", "--seed", "1")
        finally:
            home.stop_engine()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "dreamtray/pickled has no weights in safetensors format" in result.stderr
    assert not hub.downloads("pytorch_model.bin"), "the pickle is never fetched"


def test_the_openvino_decode_step_is_the_models_forward_and_is_converted_once(text_model, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from dreamtray.engine.server.expansion import TorchStepper
    from dreamtray.engine.server.expansion_openvino import DecodeStep, OpenVinoStepper, stepper
    from dreamtray.engine.server.openvino_backend import ensure_converted

    model = AutoModelForCausalLM.from_pretrained(text_model, use_safetensors=True).eval()
    step = DecodeStep(model).eval()
    empty = tuple(step.empty_past().shape)
    example = (torch.tensor([[0, 1]]), torch.zeros(*empty[:4], 3, empty[5]))
    converted = ensure_converted(tmp_path / "fp32", step, example, "test", lambda event: None)
    exact = OpenVinoStepper(converted.folder / "model.xml", tmp_path / "compiled", empty, "f32")
    reference = TorchStepper(model)
    exact.start(), reference.start()
    with torch.inference_mode():
        for ids in ([[5, 6, 7, 8]], [[9]], [[10]]):  # the prompt, then one token at a time over the cache
            # the IR keeps its weights in fp16 (openvino.save_model's default): equal to about 1e-3
            assert torch.allclose(exact(torch.tensor(ids)), reference(torch.tensor(ids)).float(), atol=2e-3)

    said: list[str] = []
    stepper(model, tmp_path / "engine", "expansion model", lambda event: said.append(event["message"]))
    assert any("Compressing the expansion model's weights to int8" in line for line in said)
    said.clear()
    stepper(model, tmp_path / "engine", "expansion model", lambda event: said.append(event["message"]))
    assert said == [], "the conversion and the int8 weights are cached"


def test_expansion_runs_on_torch_when_converting_would_not_fit_the_memory(text_model, tmp_path, monkeypatch):
    from dreamtray.engine.server import expansion

    monkeypatch.setenv("DREAMTRAY_MEMORY_LIMIT", "64M")
    monkeypatch.setattr(expansion, "_loaded", {})
    notes: list[str] = []
    step, _ = expansion._model(str(text_model), tmp_path, notes)
    assert isinstance(step, expansion.TorchStepper)
    said = "Prompt expansion runs on torch: converting it to OpenVINO needs about"
    assert any(note.startswith(said) for note in notes)
    assert not (tmp_path / "openvino").exists()
