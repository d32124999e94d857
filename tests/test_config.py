"""The config file: defaults, validation with per-key fallback, clear errors, edits that keep comments."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from dreamtray.config import (
    Config,
    ConfigFileError,
    ConfigValueError,
    config_path,
    load_config,
    set_value,
    show,
)
from dreamtray.engine.settings import Overrides, Policy


@pytest.fixture
def config_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "conf" / "config.toml"
    monkeypatch.setenv("DREAMTRAY_CONFIG", str(path))
    return path


def test_without_a_file_every_default_stands(config_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    loaded = load_config()
    assert loaded.path == config_file
    assert loaded.problems == ()
    config = loaded.config
    assert config.model == "auto"
    assert config.hotkeys == {}, "the actions suggest their keys, not the core"
    assert (config.default_action, config.style, config.queue_length) == ("", "", 5)
    assert config.gallery == tmp_path / "Pictures" / "dreamtray"
    engine = config.engine
    assert (engine.idle_unload_seconds, engine.device, engine.dtype) == (300, "auto", "auto")
    assert (engine.memory_policy, engine.vae_tiling, engine.allow_pickle, engine.backend) == (
        "auto",
        "auto",
        False,
        "local",
    )


def test_the_file_lives_in_the_platform_config_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DREAMTRAY_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_path() == tmp_path / "dreamtray" / "config.toml"


def test_a_full_file_loads_every_key(config_file, tmp_path):
    config_file.parent.mkdir()
    config_file.write_text(
        f"""
model = "sd-turbo"
default_action = "wallpaper"
style = "watercolour, noir"
gallery = "{tmp_path / "pics"}"

[hotkeys]
clipboard = "<ctrl>+<shift>+c"
sketchpad = "<cmd>+k"

[engine]
idle_unload_seconds = 60
device = "cuda:1"
dtype = "bfloat16"
memory_policy = "model_offload"
vae_tiling = "always"
allow_pickle = true
backend = "remote"
""",
        encoding="utf-8",
    )
    loaded = load_config()
    assert loaded.problems == ()
    config = loaded.config
    assert (config.model, config.default_action, config.style) == ("sd-turbo", "wallpaper", "watercolour, noir")
    assert config.gallery == tmp_path / "pics"
    assert config.hotkeys == {"clipboard": "<ctrl>+<shift>+c", "sketchpad": "<cmd>+k"}
    assert config.engine.idle_unload_seconds == 60
    assert config.engine.allow_pickle is True
    assert config.engine.overrides() == Overrides(
        device="cuda:1", dtype="bfloat16", policy=Policy.MODEL_OFFLOAD, vae_tiling=True
    )
    assert Config().engine.overrides() == Overrides()


def test_malformed_toml_names_the_file_and_line_and_the_defaults_stand(config_file):
    config_file.parent.mkdir()
    config_file.write_text('model = "sd-turbo"\n\n[engine\ndevice = "cpu"\n', encoding="utf-8")
    loaded = load_config()
    assert loaded.config == Config()
    (problem,) = loaded.problems
    assert problem.startswith(f"{config_file}: not valid TOML")
    assert "line 3" in problem
    assert problem.endswith("using the defaults")


def test_a_file_that_is_not_utf8_is_reported(config_file):
    config_file.parent.mkdir()
    config_file.write_bytes(b'model = "caf\xe9"\n')
    (problem,) = load_config().problems
    assert "not UTF-8" in problem and str(config_file) in problem


def test_a_bad_value_names_key_and_allowed_values_and_only_that_key_falls_back(config_file):
    config_file.parent.mkdir()
    config_file.write_text(
        'model = "sd-turbo"\n[engine]\nmemory_policy = "fast"\ndevice = "cpu"\nvae_tiling = "sometimes"\n',
        encoding="utf-8",
    )
    loaded = load_config()
    assert loaded.config.model == "sd-turbo"
    assert loaded.config.engine.device == "cpu"
    assert loaded.config.engine.memory_policy == "auto"
    assert loaded.config.engine.vae_tiling == "auto"
    policy_problem = next(p for p in loaded.problems if "engine.memory_policy" in p)
    assert policy_problem.startswith(f"{config_file}: engine.memory_policy = 'fast' is not allowed")
    for allowed in ("'gpu'", "'model_offload'", "'sequential_offload'", "'cpu'"):
        assert allowed in policy_problem
    assert policy_problem.endswith("using the default 'auto'")
    assert any("engine.vae_tiling" in p and "'always'" in p and "'never'" in p for p in loaded.problems)


@pytest.mark.parametrize(
    ("toml", "key", "hint"),
    [
        ('[engine]\nallow_pickle = "yes"', "engine.allow_pickle", "true or false"),
        (
            "[engine]\nidle_unload_seconds = -5",
            "engine.idle_unload_seconds",
            "use a whole number from 0 to 604800; using the default 300",
        ),
        ('[engine]\nidle_unload_seconds = "300"', "engine.idle_unload_seconds", "whole number"),
        ('[engine]\ndevice = "gpu0"', "engine.device", "cuda:N"),
        ('[engine]\nbackend = "Local Box"', "engine.backend", "lower-case letters"),
        ("engine = 5", "engine", "table"),
        ("queue_length = 0", "queue_length", "use a whole number from 1 to 50; using the default 5"),
        ("queue_length = 500", "queue_length", "use a whole number from 1 to 50"),
        ("[engine]\nidle_unload_seconds = 3000000", "engine.idle_unload_seconds", "from 0 to 604800"),
        ("[engine]\nstall_seconds = 0", "engine.stall_seconds", "from 1 to 3600; using the default 120"),
        ("preview_every = 1000", "preview_every", "from 0 to 150; using the default 1"),
        ('gallery = "relative/folder"', "gallery", "absolute path"),
        ('model = ""', "model", "name a model preset"),
        ('style = "a\\nb"', "style", "control characters"),
        ("default_action = 3", "default_action", "double quotes"),
        ('[hotkeys]\nclipboard = "ctrl alt i"', "hotkeys.clipboard", "'<ctrl>+<alt>+i'"),
        ('[hotkeys]\n"Bad Action" = "<ctrl>+b"', "hotkeys.Bad Action", "lower-case letters"),
        ('colour = "blue"', "colour", "unknown setting"),
        ("[engine]\nturbo = true", "engine.turbo", "unknown setting"),
    ],
)
def test_each_bad_value_is_reported_and_the_rest_loads(config_file, toml, key, hint):
    config_file.parent.mkdir()
    config_file.write_text(f'style = "noir"\n{toml}\n' if not toml.startswith("style") else toml, encoding="utf-8")
    loaded = load_config()
    (problem,) = loaded.problems
    assert problem.startswith(f"{config_file}: {key}")
    assert hint in problem
    expected = Config(style="noir") if not toml.startswith("style") else Config()
    assert loaded.config == expected


def test_a_hotkey_set_to_nothing_turns_it_off_and_others_keep_defaults(config_file):
    from dreamtray.app import App

    app = App(config_path=config_file)
    assert app.hotkeys == {"clipboard": "<ctrl>+<alt>+i", "wallpaper": "<ctrl>+<alt>+w"}, "as the plugins suggest"
    assert app.default_action == "clipboard", "the action its plugin marks preferred"
    config_file.parent.mkdir()
    config_file.write_text('default_action = "wallpaper"\n[hotkeys]\nwallpaper = ""\n', encoding="utf-8")
    app = App(config_path=config_file)
    assert app.config.hotkeys == {"wallpaper": ""}
    assert app.hotkeys == {"clipboard": "<ctrl>+<alt>+i", "wallpaper": ""}
    assert app.default_action == "wallpaper"


def test_a_home_relative_gallery_is_expanded(config_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config_file.parent.mkdir()
    config_file.write_text('gallery = "~/art"\n', encoding="utf-8")
    assert load_config().config.gallery == tmp_path / "art"


COMMENTED = """\
# my settings
model = "sd-turbo"  # fast enough

[engine]
# the old card
device = "cuda:0"
"""


def test_set_keeps_comments_and_other_lines(config_file):
    config_file.parent.mkdir()
    config_file.write_text(COMMENTED, encoding="utf-8")
    set_value("engine.memory_policy", "sequential_offload")
    set_value("engine.idle_unload_seconds", "30")
    set_value("engine.allow_pickle", "true")
    set_value("hotkeys.clipboard", "<ctrl>+<shift>+i")
    text = config_file.read_text(encoding="utf-8")
    assert text.startswith(COMMENTED)
    data = tomllib.loads(text)
    assert data["engine"] == {
        "device": "cuda:0",
        "memory_policy": "sequential_offload",
        "idle_unload_seconds": 30,
        "allow_pickle": True,
    }
    assert data["hotkeys"] == {"clipboard": "<ctrl>+<shift>+i"}
    loaded = load_config()
    assert loaded.problems == ()
    assert loaded.config.engine.memory_policy == "sequential_offload"
    assert loaded.config.engine.allow_pickle is True


def test_set_creates_the_file_and_its_folder(config_file):
    config = set_value("model", "sdxl-turbo")
    assert config.model == "sdxl-turbo"
    assert tomllib.loads(config_file.read_text(encoding="utf-8")) == {"model": "sdxl-turbo"}
    assert list(config_file.parent.iterdir()) == [config_file]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("engine.memory_policy", "fast", "engine.memory_policy: 'fast' is not allowed: it should be 'auto', 'gpu'"),
        ("engine.idle_unload_seconds", "soon", "engine.idle_unload_seconds: 'soon' is not allowed: use a whole number"),
        ("engine.allow_pickle", "maybe", "engine.allow_pickle: 'maybe' is not allowed: use true or false"),
        ("engine.device", "quantum", "engine.device: 'quantum' is not allowed: use auto, cpu, mps, cuda"),
        ("gallery", "relative", "gallery: 'relative' is not allowed: use an absolute path"),
        ("hotkeys.clipboard", "ctrl and i", "hotkeys.clipboard: 'ctrl and i' is not allowed: use keys joined by '+'"),
        ("colour", "blue", "colour: unknown setting; known: model, default_action"),
        ("engine", "x", "engine: unknown setting"),
        ("hotkeys", "x", "hotkeys: unknown setting"),
    ],
)
def test_set_refuses_a_bad_value_and_leaves_the_file_alone(config_file, key, value, message):
    config_file.parent.mkdir()
    config_file.write_text(COMMENTED, encoding="utf-8")
    with pytest.raises(ConfigValueError, match="^" + message.replace("(", r"\(").replace("+", r"\+")) as raised:
        set_value(key, value)
    assert raised.value.key == key
    assert config_file.read_text(encoding="utf-8") == COMMENTED


def test_set_refuses_to_edit_a_malformed_file(config_file):
    config_file.parent.mkdir()
    config_file.write_text("model = \n", encoding="utf-8")
    with pytest.raises(ConfigFileError, match=rf"{config_file}: not valid TOML.*line 1"):
        set_value("model", "sd-turbo")
    assert config_file.read_text(encoding="utf-8") == "model = \n"


def test_show_prints_valid_toml_of_every_setting(tmp_path):
    config = Config(model="sd-turbo", gallery=tmp_path, hotkeys={"wallpaper": "<ctrl>+<alt>+w"})
    data = tomllib.loads(show(config))
    assert data["model"] == "sd-turbo"
    assert data["gallery"] == str(tmp_path)
    assert data["engine"]["memory_policy"] == "auto"
    assert data["hotkeys"]["wallpaper"] == "<ctrl>+<alt>+w"
    assert Config.model_validate(data) == config


def test_each_plugin_has_its_own_table_and_an_old_key_is_still_read(tmp_path, monkeypatch):
    from dreamtray.config import load_config, plugin_settings, save_plugin_setting

    path = tmp_path / "config.toml"
    monkeypatch.setenv("DREAMTRAY_CONFIG", str(path))
    path.write_text('# mine\nwallpaper_mode = "span"\n\n[plugins.hello]\ngreeting = "hi"\ncount = 3\n')
    loaded = load_config(path)
    assert loaded.config.plugins == {"hello": {"greeting": "hi", "count": 3}, "wallpaper": {"mode": "span"}}
    assert loaded.problems == (
        f"{path}: wallpaper_mode is now plugins.wallpaper.mode; the old key is still read "
        "(`dreamtray config set plugins.wallpaper.mode VALUE` moves it)",
    )
    assert plugin_settings("wallpaper") == {"mode": "span"} and plugin_settings("absent") == {}
    save_plugin_setting("wallpaper", "mode", "same")
    assert plugin_settings("wallpaper") == {"mode": "same"}
    assert load_config(path).problems == (), "the old key is moved"
    text = path.read_text()
    assert text.startswith("# mine\n") and '[plugins.wallpaper]\nmode = "same"' in text and "wallpaper_mode" not in text


# -- bounds: ranges, sizes, depth, echoes, folders, digits ---------------------------------------------------


def test_every_number_in_the_config_has_a_range():
    """A number without an upper bound reaches the engine as a wait or a size nothing can hold."""
    from dreamtray.config import EngineSettings, _range_of

    numbers = [
        (prefix + (name,))
        for prefix, model in (((), Config), (("engine",), EngineSettings))
        for name, field in model.model_fields.items()
        if field.annotation in (int, float)
    ]
    assert numbers, "the config has numbers"
    for loc in numbers:
        assert _range_of(loc) is not None, f"{'.'.join(loc)} has no range"


def test_the_worker_settings_refuse_a_wait_out_of_range():
    from dreamtray.engine.settings import WorkerSettings

    with pytest.raises(ValueError, match="idle_unload_seconds = 3000000.0 is out of range: use a number from 0 to"):
        WorkerSettings(cache_dir="x", idle_unload_seconds=3000000.0)
    with pytest.raises(ValueError, match="stall_seconds = nan is out of range"):
        WorkerSettings(cache_dir="x", stall_seconds=float("nan"))


@pytest.mark.parametrize(
    "toml",
    [
        "a = " + "[" * 5000 + "]" * 5000,
        "a = " + "{b = " * 5000 + "1" + "}" * 5000,
        "a" + ".a" * 5000 + " = 1",
        "[" + ".".join(["t"] * 5000) + "]",
    ],
)
def test_a_file_nested_thousands_deep_falls_back_to_the_defaults(config_file, toml):
    config_file.parent.mkdir()
    config_file.write_text(toml, encoding="utf-8")
    loaded = load_config()
    assert loaded.config == Config()
    assert loaded.problems == (f"{config_file}: nested too deeply (at most 8 levels); using the defaults",)


def test_a_file_larger_than_a_settings_file_is_not_read(config_file):
    config_file.parent.mkdir()
    config_file.write_text('style = "' + "x" * (2 * 1024 * 1024) + '"\n', encoding="utf-8")
    loaded = load_config()
    assert loaded.config == Config()
    too_large = f"{config_file}: larger than 1024 KiB, too large for a settings file; using the defaults"
    assert loaded.problems == (too_large,)


def test_a_huge_or_hostile_value_is_echoed_short_and_escaped(config_file):
    config_file.parent.mkdir()
    escapes = r"\u001b]0;owned\u0007\u202e"  # TOML escapes: the loaded text holds ESC, BEL and RLO
    config_file.write_text(
        f'model = "{escapes}{"x" * 500_000}\\n"\n"{escapes}" = 1\n', encoding="utf-8"
    )
    problems = "\n".join(load_config().problems)
    assert len(problems) < 2000, "shortened, not echoed whole"
    assert not any(char in problems for char in "\x1b\x07\u202e"), "escaped, never raw"
    assert r"model = '\x1b]0;owned\x07\u202exxx" in problems and "... (500012 characters)" in problems
    assert r"'\x1b]0;owned\x07\u202e': unknown setting" in problems


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("/proc/self", "no file can be made in /proc/self"),
        ("/proc/self/new-folder", "no file can be made in /proc/self"),
        ("FILE", "is a file, not a folder"),
        ("FILE/below", "is a file, not a folder"),
    ],
)
def test_set_gallery_takes_only_a_writable_folder(config_file, tmp_path, value, why):
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ConfigValueError, match="^gallery: .* is not allowed: .*" + why.replace("/", ".")):
        set_value("gallery", value.replace("FILE", str(a_file)))
    assert not config_file.exists()


def test_set_gallery_takes_a_new_folder_under_a_writable_one(config_file, tmp_path):
    assert set_value("gallery", str(tmp_path / "new" / "images")).gallery == tmp_path / "new" / "images"
    assert not (tmp_path / "new").exists(), "nothing is made before an image is saved"


@pytest.mark.parametrize("text", ["²", "٣", "1_000", "１２", "9" * 5000, "3.5", "0x10"])
def test_set_takes_whole_numbers_in_ascii_digits_only(config_file, text):
    with pytest.raises(ConfigValueError, match=r"is not allowed: use a whole number from 1 to 3600 \(digits 0-9\)"):
        set_value("engine.stall_seconds", text)
    assert not config_file.exists()


def test_set_refuses_a_number_out_of_range_naming_the_range(config_file):
    message = "^engine.idle_unload_seconds: 3000000 is not allowed: use a whole number from 0 to 604800$"
    with pytest.raises(ConfigValueError, match=message):
        set_value("engine.idle_unload_seconds", "3000000")
