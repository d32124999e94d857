"""Prompt expansion: a random-weight GPT-2 in the real model's shape (tests/tiny_text_model.py) grows prompts
in the engine's expansion process; `dreamtray expand`, `generate --expand`, the PNG's metadata, `show` and
`generate --from` are run for real."""

from __future__ import annotations

import json

import pytest
from cli_env import DreamtrayHome
from tiny_text_model import build_text_model

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

    model, tokenizer = _model(str(text_model), tmp_path, [])
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
