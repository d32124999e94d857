"""`dreamtray styles` and `styles show`, run through click against a registry filled from the real plugins."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import dreamtray_plugins.styles
from dreamtray.cli.styles import COMMANDS, StyleServices, styles
from dreamtray.plugins import PluginHost
from dreamtray.styles import StyleRegistry, load_registry


def services_for(user_folder) -> StyleServices:
    plugins = PluginHost(only=())
    plugins.register(dreamtray_plugins.styles, name="styles")

    def no_engine():
        raise AssertionError("the styles commands must not reach the engine")

    return StyleServices(registry=lambda: load_registry(plugins, user_folder), engine=no_engine, series_dir=user_folder)


@pytest.fixture
def user_folder(tmp_path):
    folder = tmp_path / "styles"
    folder.mkdir()
    return folder


def test_commands_are_exposed():
    assert COMMANDS == [styles]


def test_list_shows_name_pack_and_source(user_folder):
    (user_folder / "mine.csv").write_text("name,prompt,negative_prompt\nMy look,{prompt} in teal,grey\n")
    result = CliRunner().invoke(styles, [], obj=services_for(user_folder))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 34
    watercolor = next(line for line in lines if line.startswith("Watercolor "))
    assert watercolor.split() == ["Watercolor", "Illustration", "plugin:styles"]
    mine = next(line for line in lines if line.startswith("My look "))
    assert mine.split()[2:] == ["mine", f"file:{user_folder / 'mine.csv'}"]


def test_list_as_json(user_folder):
    result = CliRunner().invoke(styles, ["--json"], obj=services_for(user_folder))
    assert result.exit_code == 0
    listed = json.loads(result.stdout)
    assert len(listed) == 33
    assert {"name": "Calm horizon", "pack": "Wallpaper", "source": "plugin:styles"} in listed
    assert set(listed[0]) == {"name", "pack", "source"}


def test_broken_user_file_is_a_warning_and_the_rest_are_listed(user_folder):
    (user_folder / "broken.toml").write_text('[[style]]\nname = "X"\nsteps = "many"\n')
    result = CliRunner().invoke(styles, ["--json"], obj=services_for(user_folder))
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 33
    expected = f"warning: skipped {user_folder / 'broken.toml'}: style 'X': steps: Input should be a valid integer"
    assert expected in result.stderr


def test_show_prints_template_negative_and_settings(user_folder):
    result = CliRunner().invoke(styles, ["show", "calm HORIZON"], obj=services_for(user_folder))
    assert result.exit_code == 0, result.output
    assert "name:      Calm horizon\n" in result.stdout
    assert "template:  {prompt}, wide calm landscape, low horizon" in result.stdout
    assert "negative:  clutter, busy details, text" in result.stdout
    assert "aspect:    1.7778" in result.stdout


def test_show_json_round_trips(user_folder):
    result = CliRunner().invoke(styles, ["show", "Macro", "--json"], obj=services_for(user_folder))
    shown = json.loads(result.stdout)
    assert shown["name"] == "Macro" and shown["pack"] == "Photography" and shown["aspect"] == 1.0


def test_show_lists_loras_and_models(user_folder):
    (user_folder / "pinned.toml").write_text(
        '[[style]]\nname = "Pinned"\nseed = 42\nmodels = ["sd-turbo"]\n'
        'loras = [{ source = "me/x.safetensors", scale = 0.5 }]\n'
    )
    result = CliRunner().invoke(styles, ["show", "pinned"], obj=services_for(user_folder))
    assert "seed:      42" in result.stdout
    assert "models:    sd-turbo" in result.stdout
    assert "loras:     me/x.safetensors x0.5" in result.stdout
    assert "negative:  (none)" in result.stdout


def test_show_unknown_style_fails_with_the_known_names():
    registry = StyleRegistry()
    services = StyleServices(registry=lambda: registry, engine=lambda: None, series_dir=None)
    result = CliRunner().invoke(styles, ["show", "Nope"], obj=services)
    assert result.exit_code == 1
    assert "unknown style 'Nope': there are no styles" in result.stderr


def test_empty_registry_says_where_to_put_files():
    services = StyleServices(registry=StyleRegistry, engine=lambda: None, series_dir=None)
    result = CliRunner().invoke(styles, [], obj=services)
    assert result.exit_code == 0 and "No styles." in result.stdout


def test_run_alone_the_command_builds_its_application_from_the_users_settings(user_dirs, monkeypatch):
    monkeypatch.setenv("DREAMTRAY_PLUGINS", "styles")
    user_styles = user_dirs["XDG_DATA_HOME"] / "dreamtray/styles"
    user_styles.mkdir(parents=True)
    (user_styles / "mine.csv").write_text("name,prompt,negative_prompt\nMy look,{prompt} in teal,grey\n")
    result = CliRunner().invoke(styles, ["--json"])
    assert result.exit_code == 0, result.output
    found = {row["name"]: row for row in json.loads(result.stdout)}
    assert found["My look"]["source"].endswith("mine.csv")
    assert found["Watercolor"]["pack"] == "Illustration"
