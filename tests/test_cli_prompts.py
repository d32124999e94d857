"""Prompts and styles through the real `dreamtray` command on the tiny model: any text, unknown styles,
`config set style`, and `generate --from` on styled and A1111 images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_env import DreamtrayHome
from fixtures_engine import pixels
from png_samples import a1111_png

from dreamtray.images.metadata import read_metadata

STYLES = (
    "name,prompt,negative_prompt\n"
    '"Texture, top down","texture {prompt}, top down close-up","blurry, (blur, blurry, bokeh)"\n'
    "Watercolor,watercolor painting of {prompt},photo\n"
    "Oil painting,oil painting of {prompt},\n"
    "Ink,ink sketch of {prompt},color\n"
)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    env = DreamtrayHome.create(tmp_path_factory.mktemp("cli-prompts"))
    styles = env.root / "data" / "dreamtray" / "styles"
    styles.mkdir(parents=True)
    (styles / "mine.csv").write_text(STYLES, encoding="utf-8")
    yield env
    env.stop_engine()


def generate(home: DreamtrayHome, *args: str) -> dict:
    return json.loads(home.run("generate", *args, "--size", "64x64", "--steps", "1", "--json", check=True).stdout)


def test_japanese_without_spaces_makes_an_image_and_keeps_the_prompt_whole(home):
    prompt = (
        "夕暮れの灯台と静かな海、油絵風、柔らかい光、遠くに小さな船が浮かんでいる、"
        "空には雲がたなびき、波は穏やかに岸辺に打ち寄せている"
    )
    made = generate(home, prompt)
    assert made["warnings"] == []
    image = Path(made["images"][0])
    assert read_metadata(image).parameters.prompt == prompt
    assert read_metadata(image).request.prompt == prompt


def test_a_prompt_of_nothing_but_syntax_is_refused_before_the_engine(home):
    result = home.run("generate", "( ) [ ] BREAK")
    assert result.returncode == 2 and "no words once its A1111 syntax" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_style_names_the_three_closest(home):
    result = home.run("generate", "a fox", "--style", "Watercolour")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "unknown style 'Watercolour'; the closest are 'Watercolor'," in result.stderr


def test_config_set_style_checks_the_names(home):
    refused = home.run("config", "set", "style", "Oil paintng")
    assert refused.returncode == 2
    assert "style: unknown style 'Oil paintng'; the closest are 'Oil painting'" in refused.stderr
    accepted = home.run("config", "set", "style", "texture top down, ink", check=True)
    assert "saved" in accepted.stdout
    home.run("config", "set", "style", "", check=True)


def test_from_a_styled_image_gives_the_same_prompt_and_pixels_and_styles_once(home):
    made = generate(home, "a lighthouse", "--style", "Texture, top down", "--seed", "12")
    assert made["request"]["prompt"] == "texture a lighthouse, top down close-up"
    assert made["request"]["negative_prompt"] == "blurry, (blur, blurry, bokeh)", "terms kept as written"
    again = generate(home, "--from", made["images"][0])
    assert again["request"]["prompt"] == made["request"]["prompt"]
    assert again["request"]["styles"] == ["Texture, top down"]
    assert pixels(Path(again["images"][0]).read_bytes()) == pixels(Path(made["images"][0]).read_bytes())


def test_from_an_a1111_image_maps_its_sampler_and_warns_once_per_setting(home, tmp_path):
    path = tmp_path / "a1111.png"
    text = (
        "a castle\nSteps: 1, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3, Size: 64x64, "
        "Model: v1-5, Clip skip: 2, Hires upscale: 2, Denoising strength: 0.5, Version: v1.9.4"
    )
    path.write_bytes(a1111_png(text))
    result = home.run("generate", "--from", str(path), "--json", check=True)
    assert json.loads(result.stdout)["request"]["sampler"] == "DPM++ 2M Karras"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {path}: Model: 'v1-5' is that program's checkpoint; dreamtray's configured model is used",
        f"warning: {path}: hires fix not applied: Hires upscale: 2, Denoising strength: 0.5",
        f"warning: {path}: clip skip not applied: Clip skip: 2",
    ]
    image = Path(json.loads(result.stdout)["images"][0])
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in read_metadata(image).texts["parameters"]
