"""Styles: loading each format (good and broken files), the registry, stacking, and the first-party packs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dreamtray
from dreamtray.plugins import PluginHost
from dreamtray.request import LoRA, Request
from dreamtray.styles import (
    Style,
    StyleError,
    StyleRegistry,
    apply_styles,
    load_registry,
    load_style_file,
)

GOOD_TOML = """
[pack]
name = "Mine"

[[style]]
name = "Ink"
prompt = "ink sketch of {prompt}, hatching"
negative_prompt = "color, photo"
aspect = 1.5
steps = 25
guidance = 6
seed = 1234
models = ["tiny", "sd-turbo"]
loras = [{ source = "me/ink-lora", scale = 0.7 }]

[[style]]
name = "Plain"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_pack_loads_every_field(tmp_path):
    ink, plain = load_style_file(write(tmp_path, "mine.toml", GOOD_TOML))
    assert (ink.name, ink.pack, ink.source) == ("Ink", "Mine", f"file:{tmp_path / 'mine.toml'}")
    assert ink.prompt == "ink sketch of {prompt}, hatching"
    assert (ink.aspect, ink.steps, ink.guidance, ink.seed) == (1.5, 25, 6.0, 1234)
    assert ink.models == ("tiny", "sd-turbo")
    assert ink.loras == (LoRA(source="me/ink-lora", scale=0.7),)
    assert plain.prompt == "{prompt}" and plain.settings == {}


def test_toml_pack_name_defaults_to_the_file_name(tmp_path):
    path = write(tmp_path, "night-pack.toml", '[[style]]\nname = "Dark"\nprompt = "{prompt}, dark"')
    (style,) = load_style_file(path)
    assert style.pack == "night-pack"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[style]]\nname = "Ink"\ncolour = "red"', ["'Ink'", "unknown key 'colour'", "allowed: name, prompt"]),
        ('[[style]]\nname = "Ink"\nsteps = "25"', ["'Ink'", "steps: Input should be a valid integer"]),
        ('[[style]]\nname = "Ink"\nwidth = 10', ["'Ink'", "width: Input should be greater than or equal to 64"]),
        ('[[style]]\nname = "Ink"\nloras = [{ source = "x", weight = 1 }]', ["unknown key 'loras.0.weight'"]),
        ('[[style]]\nprompt = "{prompt}"', ["'(no name)'", "name: Field required"]),
        ('[[style]\nname = "Ink"', ["not valid TOML"]),
        ('[pack]\nname = "Empty"', ["no styles"]),
        ('[packs]\nname = "x"\n[[style]]\nname = "a"', ["unknown top-level key(s) packs"]),
        ('[[style]]\nname = "Ink"\npack = "Other"', ["'Ink'", "`pack` and `source` are set by dreamtray"]),
    ],
)
def test_broken_toml_is_reported_with_file_and_style(tmp_path, text, expected):
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(StyleError) as caught:
        load_style_file(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    for part in expected:
        assert part in message


def test_every_bad_style_of_a_file_is_reported(tmp_path):
    path = write(tmp_path, "bad.toml", '[[style]]\nname = "A"\nsteps = 0\n[[style]]\nname = "B"\nseed = -1\n')
    with pytest.raises(StyleError) as caught:
        load_style_file(path)
    assert "'A': steps" in str(caught.value) and "'B': seed" in str(caught.value)


def test_fooocus_json_loads(tmp_path):
    entries = [
        {"name": "Cinematic Glow", "prompt": "cinematic still of {prompt}, glow", "negative_prompt": "cartoon"},
        {"name": "No Negative", "prompt": "{prompt}, moody"},
    ]
    glow, moody = load_style_file(write(tmp_path, "fooocus_styles.json", json.dumps(entries)))
    assert (glow.name, glow.prompt, glow.negative_prompt) == ("Cinematic Glow", entries[0]["prompt"], "cartoon")
    assert glow.pack == "fooocus_styles" and moody.negative_prompt == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[{"name": "A", "prompt": "x"', "not valid JSON"),
        ('{"name": "A"}', "expected a non-empty JSON array"),
        ('[{"name": "A", "prompt": 3}]', "entry 1: style 'A': prompt: Input should be a valid string; skipped"),
        ('[{"prompt": "x"}]', "entry 1: skipped: not an object with a `name` string"),
        ('["just a string"]', "entry 1: skipped: not an object with a `name` string"),
    ],
)
def test_broken_fooocus_json_is_reported(tmp_path, text, expected):
    path = write(tmp_path, "styles.json", text)
    with pytest.raises(StyleError) as caught:
        load_style_file(path)
    assert str(caught.value).startswith(str(path)) and expected in str(caught.value)


def test_a1111_csv_loads_with_quoting(tmp_path):
    text = (
        "\ufeffname,prompt,negative_prompt\n"
        '"Moody, dark","{prompt}, moody ""noir"" light","bright, cheerful"\n'
        "Empty negative,vivid {prompt},\n"
    )
    path = tmp_path / "styles.csv"
    path.write_text(text, encoding="utf-8")
    moody, vivid = load_style_file(path)
    assert (moody.name, moody.prompt) == ("Moody, dark", '{prompt}, moody "noir" light')
    assert moody.negative_prompt == "bright, cheerful"
    assert (vivid.prompt, vivid.negative_prompt, vivid.pack) == ("vivid {prompt}", "", "styles")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("title,prompt\nA,x\n", "the header must be name,prompt,negative_prompt or name,text (got title,prompt)"),
        ("name,negative_prompt\nA,x\n", "the header must be"),
        ("name,prompt\n,x\n", "line 2: style '': name: String should have at least 1 character; skipped"),
        ("", "the header must be"),
    ],
)
def test_broken_a1111_csv_is_reported(tmp_path, text, expected):
    path = write(tmp_path, "styles.csv", text)
    with pytest.raises(StyleError) as caught:
        load_style_file(path)
    assert str(caught.value).startswith(str(path)) and expected in str(caught.value)


def test_user_folder_skips_broken_files_and_loads_the_rest(tmp_path):
    write(tmp_path, "a-good.toml", GOOD_TOML)
    write(tmp_path, "b-broken.json", "[{")
    write(tmp_path, "c-good.csv", "name,prompt,negative_prompt\nVivid,vivid {prompt},dull\n")
    write(tmp_path, "notes.txt", "not a style file")
    registry = load_registry(None, tmp_path)
    assert sorted(style.name for style in registry) == ["Ink", "Plain", "Vivid"]
    assert len(registry.problems) == 1
    assert registry.problems[0].startswith(f"skipped {tmp_path / 'b-broken.json'}: not valid JSON")


def test_registry_later_style_wins_and_is_reported(tmp_path):
    write(tmp_path, "a.toml", '[[style]]\nname = "Ink"\nprompt = "first {prompt}"')
    write(tmp_path, "b.csv", "name,prompt\nink,second {prompt}\n")
    registry = load_registry(None, tmp_path)
    assert len(registry) == 1
    assert registry.get("INK").prompt == "second {prompt}"
    assert "ink" in registry and "other" not in registry
    assert registry.problems == [
        f"style 'ink' from file:{tmp_path / 'b.csv'} replaces the one from file:{tmp_path / 'a.toml'}"
    ]


def test_unknown_style_names_the_known_ones():
    registry = StyleRegistry()
    registry.add(Style(name="Ink"))
    for name in ("Ink", "Inkwell", "Photo", "Oil paint"):
        registry.add(Style(name=name))
    with pytest.raises(StyleError) as caught:
        registry.get("Inc")
    assert (
        str(caught.value)
        == "unknown style 'Inc'; the closest are 'Ink', 'Inkwell', 'Oil paint' (`dreamtray styles` lists all 4)"
    )
    with pytest.raises(StyleError, match="there are no styles"):
        StyleRegistry().get("Ink")


# --- stacking ------------------------------------------------------------------------------------------------


def test_template_wraps_the_prompt():
    styled = apply_styles(Request(prompt="a red fox"), [Style(name="Ink", prompt="ink sketch of {prompt}, hatching")])
    assert styled.prompt == "ink sketch of a red fox, hatching"
    assert styled.styles == ("Ink",)


def test_template_without_slot_goes_after_the_prompt():
    styled = apply_styles(Request(prompt="a red fox"), [Style(name="Moody", prompt="moody light, fog")])
    assert styled.prompt == "a red fox, moody light, fog"


def test_stacked_templates_wrap_in_order_and_negatives_are_kept_as_written():
    medium = Style(name="Watercolor", prompt="watercolor of {prompt}", negative_prompt="photo, Blurry")
    light = Style(name="Dusk", prompt="{prompt} at dusk", negative_prompt="blurry, daylight, {prompt}, text")
    request = Request(prompt="a red fox", negative_prompt="text, photo")
    styled = apply_styles(request, [medium, light])
    assert styled.prompt == "watercolor of a red fox at dusk"
    assert styled.negative_prompt == "blurry, daylight, text, photo, photo, Blurry, text", "no term removed"
    frame = Style(name="Frame", prompt="framed print of {prompt}")
    assert apply_styles(request, [medium, frame]).prompt == "framed print of watercolor of a red fox"
    assert apply_styles(request, [frame, medium]).prompt == "watercolor of framed print of a red fox"


def test_request_settings_win_else_the_last_style():
    first = Style(name="A", steps=10, guidance=3.0, seed=1, sampler="euler", aspect=1.5, models=("tiny",))
    second = Style(name="B", steps=20, width=512, height=768, models=("sd-turbo", "tiny"))
    styled = apply_styles(Request(prompt="fox"), [first, second])
    assert (styled.steps, styled.guidance, styled.seed, styled.sampler) == (20, 3.0, 1, "Euler"), "A1111 name"
    assert (styled.width, styled.height, styled.aspect, styled.model) == (512, 768, None, "sd-turbo")
    explicit = Request(prompt="fox", steps=4, seed=99, aspect=2.0, model="tiny")
    styled = apply_styles(explicit, [first, second])
    assert (styled.steps, styled.seed, styled.aspect, styled.width, styled.height, styled.model) == (
        4,
        99,
        2.0,
        None,
        None,
        "tiny",
    )


def test_loras_are_collected_once_each():
    a = Style(name="A", loras=(LoRA(source="x", scale=0.5), LoRA(source="y")))
    b = Style(name="B", loras=(LoRA(source="y", scale=0.2), LoRA(source="z")))
    styled = apply_styles(Request(prompt="fox", loras=(LoRA(source="x", scale=1.0),)), [a, b])
    assert styled.loras == (LoRA(source="x", scale=1.0), LoRA(source="y"), LoRA(source="z"))


def test_styled_request_is_validated():
    long_template = Style(name="Long", prompt="{prompt} " + "x" * 19_990)
    long_template = long_template.model_copy(update={"prompt": "{prompt} " + "x" * 19_995})
    with pytest.raises(ValueError, match="prompt"):
        apply_styles(Request(prompt="a red fox"), [long_template])


def test_registry_applies_the_styles_a_request_names():
    registry = StyleRegistry()
    registry.add(Style(name="Ink", prompt="ink sketch of {prompt}"))
    registry.add(Style(name="Dusk", prompt="{prompt} at dusk"))
    styled = registry.apply(Request(prompt="a fox", styles="ink, Dusk"))
    assert styled.prompt == "ink sketch of a fox at dusk"
    assert styled.styles == ("Ink", "Dusk")


# --- plugins -------------------------------------------------------------------------------------------------


def plugin_host(**plugins: object) -> PluginHost:
    """A plugin host holding only the plugins given (by name), none of the installed ones."""
    host = PluginHost(only=())
    for name, plugin in plugins.items():
        host.register(plugin, name=name)
    return host


class ThirdPartyPack:
    """What a third-party style pack plugin looks like."""

    @dreamtray.hookimpl
    def register_styles(self, register):
        register(Style(name="Vaporwave", prompt="{prompt}, pink and teal, retro grid", pack="Retro"))
        register(Style(name="Sepia", prompt="{prompt}, sepia toned", pack="Retro", source="plugin:retro-pack"))


class BrokenPack:
    @dreamtray.hookimpl
    def register_styles(self, register):
        register(Style(name="Half"))
        raise RuntimeError("data file missing")


def test_third_party_pack_plugin_registers_styles(tmp_path):
    plugins = plugin_host(retro=ThirdPartyPack(), broken=BrokenPack())
    registry = load_registry(plugins, tmp_path)
    assert [(s.name, s.pack, s.source) for s in registry] == [
        ("Sepia", "Retro", "plugin:retro-pack"),
        ("Vaporwave", "Retro", "plugin:retro"),
    ]
    assert registry.problems == [], "a plugin that raised registers nothing, not half its styles"
    assert plugins.records["broken"].errors == ["raised in register_styles: RuntimeError: data file missing"]
    assert registry.apply(Request(prompt="a car", styles="vaporwave")).prompt == "a car, pink and teal, retro grid"


def test_plugin_registering_something_else_is_reported(tmp_path):
    class Wrong:
        @dreamtray.hookimpl
        def register_styles(self, register):
            register({"name": "Ink"})

    registry = load_registry(plugin_host(wrong=Wrong()), tmp_path)
    assert len(registry) == 0
    assert registry.problems == ["plugin wrong: register_styles expects a dreamtray.styles.Style, got dict"]


def test_user_file_overrides_first_party_style(tmp_path):
    import dreamtray_plugins.styles

    write(tmp_path, "mine.toml", '[[style]]\nname = "Watercolor"\nprompt = "my watercolor {prompt}"')
    registry = load_registry(plugin_host(styles=dreamtray_plugins.styles), tmp_path)
    assert registry.get("watercolor").prompt == "my watercolor {prompt}"
    assert len(registry.problems) == 1 and "replaces the one from plugin:" in registry.problems[0]


# --- first-party packs ---------------------------------------------------------------------------------------


def first_party_registry(tmp_path) -> StyleRegistry:
    import dreamtray_plugins.styles

    return load_registry(plugin_host(styles=dreamtray_plugins.styles), tmp_path)


def test_first_party_packs_are_complete(tmp_path):
    registry = first_party_registry(tmp_path)
    assert registry.problems == []
    packs: dict[str, list[Style]] = {}
    for style in registry:
        packs.setdefault(style.pack, []).append(style)
        assert style.source.startswith("plugin:") and style.description
    assert sorted(packs) == ["Illustration", "Photography", "Wallpaper"]
    assert all(len(styles) >= 10 for styles in packs.values())
    assert all(style.aspect and style.aspect > 1.5 for style in packs["Wallpaper"])


def test_every_first_party_style_yields_a_valid_request(tmp_path):
    registry = first_party_registry(tmp_path)
    for style in registry:
        styled = apply_styles(Request(prompt="a lighthouse on a cliff", model="tiny"), [style])
        assert isinstance(styled, Request) and styled.styles == (style.name,)
        assert "a lighthouse on a cliff" in styled.prompt and "{prompt}" not in styled.prompt
        assert styled.negative_prompt and styled.model == "tiny"
        assert Request.model_validate_json(styled.model_dump_json()) == styled


def test_the_documented_example_pack_loads(tmp_path):
    guide = (Path(__file__).parents[1] / "docs" / "style-packs.md").read_text(encoding="utf-8")
    example = guide.split("```toml\n", 1)[1].split("```", 1)[0]
    (style,) = load_style_file(write(tmp_path, "night.toml", example))
    assert (style.name, style.pack, style.sampler, style.seed) == ("Lamplight", "Night walks", "DPM++ 2M", 1234)
    assert style.loras == (LoRA(source="me/lamplight-lora", scale=0.8),)
    styled = apply_styles(Request(prompt="a fox"), [style])
    assert styled.prompt.startswith("a fox, lit by old street lamps") and styled.model == "sd-turbo"
