"""A1111 infotexts of several versions mapped field by field, A1111's sampler names written, lossless --from."""

from __future__ import annotations

import json

import pytest
from fixtures_engine import pixels
from png_samples import a1111_png
from test_metadata import reference_parse

from dreamtray.images.metadata import add_metadata, read_metadata, reproduce
from dreamtray.request import Request
from dreamtray.styles import Style, StyleRegistry

V1_5 = (
    "a lighthouse, (dramatic sky:1.2)\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 11, Size: 512x768, Model hash: 6ce0161689, "
    "Model: v1-5-pruned-emaonly, Clip skip: 2, ENSD: 31337, Version: v1.5.1"
)
V1_6_HIRES = (
    "a castle\nNegative prompt: lowres\n"
    "Steps: 30, Sampler: Euler a, CFG scale: 6.5, Seed: 22, Size: 512x512, Denoising strength: 0.45, "
    "Hires upscale: 2, Hires upscaler: Latent, Version: v1.6.0"
)
V1_9 = (
    "a fox in snow\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 33, Size: 832x1216, "
    'Variation seed: 5, Variation seed strength: 0.3, Styles array: ["Photo"], Version: v1.9.4'
)
V1_10 = (
    "a city at night\n"
    "Steps: 12, Sampler: DPM++ 2M SDE, Schedule type: Exponential, CFG scale: 4, Seed: 44, Size: 768x768, "
    "Version: v1.10.1"
)
FORGE = (
    "a bowl of fruit\n"
    "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 55, "
    "Size: 896x1152, Model: flux1-dev-bnb-nf4, Version: f2.0.1v1.10.1-previous-313"
)
UNSUPPORTED = (
    "a tree\nSteps: 20, Sampler: DPM adaptive, CFG scale: 7, Seed: 66, Size: 512x512, Face restoration: CodeFormer"
)
EULER_A_KARRAS = "a tree\nSteps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 77, Size: 512x512"


@pytest.mark.parametrize(
    ("text", "fields", "warnings"),
    [
        (
            V1_5,
            {"prompt": "a lighthouse, (dramatic sky:1.2)", "negative_prompt": "blurry", "steps": 20, "guidance": 7.0,
             "seed": 11, "width": 512, "height": 768, "sampler": "DPM++ 2M Karras"},
            ["Model: 'v1-5-pruned-emaonly' is that program's checkpoint; dreamtray's configured model is used",
             "clip skip not applied: Clip skip: 2", "eta not applied: ENSD: 31337"],
        ),
        (
            V1_6_HIRES,
            {"prompt": "a castle", "negative_prompt": "lowres", "steps": 30, "guidance": 6.5, "seed": 22,
             "sampler": "Euler a"},
            ["hires fix not applied: Hires upscale: 2, Hires upscaler: Latent, Denoising strength: 0.45"],
        ),
        (
            V1_9,
            {"prompt": "a fox in snow", "steps": 25, "guidance": 5.5, "seed": 33, "width": 832, "height": 1216,
             "sampler": "DPM++ 2M Karras", "styles": ()},
            ["variation seed not applied: Variation seed: 5, Variation seed strength: 0.3"],
        ),
        (V1_10, {"sampler": "DPM++ 2M SDE Exponential", "guidance": 4.0, "steps": 12}, []),
        (
            FORGE,
            {"sampler": "Euler", "guidance": 1.0, "width": 896, "height": 1152},
            ["Schedule type: 'Simple' is not available for Euler; its default schedule is used",
             "Model: 'flux1-dev-bnb-nf4' is that program's checkpoint; dreamtray's configured model is used"],
        ),
        (
            UNSUPPORTED,
            {"sampler": None, "seed": 66},
            ["Sampler: 'DPM adaptive' is not available here; the model's default sampler is used",
             "face restoration not applied: Face restoration: CodeFormer"],
        ),
        (
            EULER_A_KARRAS,
            {"sampler": "Euler a"},
            ["Schedule type: 'Karras' is not available for Euler a; its default schedule is used"],
        ),
    ],
    ids=["v1.5", "v1.6-hires", "v1.9", "v1.10", "forge-flux", "unsupported-sampler", "euler-a-karras"],
)  # fmt: skip
def test_infotexts_of_each_a1111_version_map_field_by_field_with_one_warning_each(text, fields, warnings):
    found = reproduce(read_metadata(a1111_png(text)))
    assert {key: getattr(found.request, key) for key in fields} == fields
    assert list(found.warnings) == warnings
    assert found.request.model is None, "another program's checkpoint name is never used as ours"


@pytest.mark.parametrize(
    ("typed", "written"),
    [
        ("EulerAncestralDiscreteScheduler", {"Sampler": "Euler a"}),
        ("dpm++ 2m karras", {"Sampler": "DPM++ 2M", "Schedule type": "Karras"}),
        ("DPMSolverMultistepScheduler", {"Sampler": "DPM++ 2M"}),
        ("LMS Karras", {"Sampler": "LMS", "Schedule type": "Karras"}),
    ],
)
def test_dreamtray_writes_a1111_sampler_names_whatever_was_typed(typed, written):
    request = Request(prompt="a fox", sampler=typed, seed=1, steps=4, guidance=7.0)
    png = add_metadata(
        a1111_png("x\nSteps: 1, Sampler: Euler, Seed: 1"), request, model="tiny", sampler=request.sampler
    )
    settings = reference_parse(read_metadata(png).texts["parameters"])["settings"]
    assert {key: settings[key] for key in written} == written
    assert ("Schedule type" in settings) == ("Schedule type" in written)
    keys = list(settings)
    if "Schedule type" in written:
        assert keys.index("Schedule type") == keys.index("Sampler") + 1, "where A1111 writes it"


# Lossless reproduction of styled images.

INK = Style(name="Ink, sketch", prompt="ink sketch of {prompt}, hatching", negative_prompt="color, (blur, blurry)")
DUSK = Style(name="Dusk", prompt="{prompt} at dusk", negative_prompt="daylight", steps=3)


@pytest.fixture
def registry() -> StyleRegistry:
    found = StyleRegistry()
    found.add(INK)
    found.add(DUSK)
    return found


def test_metadata_keeps_the_user_prompt_and_the_style_names_apart(registry):
    styled = registry.apply(Request(prompt="a lighthouse", negative_prompt="text", styles="Ink, sketch, dusk", seed=4))
    assert styled.prompt == "ink sketch of a lighthouse, hatching at dusk"
    png = add_metadata(a1111_png("x\nSteps: 1, Sampler: Euler, Seed: 1"), styled, model="tiny", sampler="Euler")
    metadata = read_metadata(png)
    settings = reference_parse(metadata.texts["parameters"])
    assert settings["prompt"] == styled.prompt, "A1111 and other tools show the styled prompt, whole"
    assert json.loads(settings["settings"]["Styles array"]) == ["Ink, sketch", "Dusk"]
    stored = json.loads(metadata.texts["dreamtray"])
    assert stored["unstyled"] == {"prompt": "a lighthouse", "negative_prompt": "text"}
    again = reproduce(metadata).request
    assert (again.prompt, again.negative_prompt, again.styles) == ("a lighthouse", "text", ("Ink, sketch", "Dusk"))
    assert registry.apply(again) == styled.model_copy(update={"count": 1}), "styled once again, never twice"
    assert registry.apply(registry.apply(again)) == registry.apply(again)


def test_an_older_styled_image_is_not_styled_a_second_time(registry):
    old = Request(prompt="texture a lighthouse top down", styles=("Dusk",), seed=1)  # no `unstyled`: before it
    png = add_metadata(a1111_png("x\nSteps: 1, Sampler: Euler, Seed: 1"), old, model="tiny", sampler="Euler")
    again = reproduce(read_metadata(png)).request
    assert (again.prompt, again.styles) == ("texture a lighthouse top down", ())


def test_from_a_styled_image_makes_the_same_prompt_and_pixels(runner, registry):
    styled = registry.apply(Request(prompt="a lighthouse", styles=("Ink, sketch", "Dusk"), seed=9, width=64, height=64))
    first = runner.generate(styled)
    png = add_metadata(first.images[0], first.request, model=first.model, sampler=first.sampler)
    request = registry.apply(reproduce(read_metadata(png)).request)
    second = runner.generate(request)
    assert second.request.prompt == first.request.prompt == "ink sketch of a lighthouse, hatching at dusk"
    assert pixels(second.images[0]) == pixels(first.images[0])
