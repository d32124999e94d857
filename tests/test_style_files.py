"""A1111 styles.csv files read side by side with a reference reader that follows A1111's own code."""

from __future__ import annotations

import pytest
from style_files import FILES, a1111_merge, a1111_styles, big_file_with_one_bad_quote, write_files

from dreamtray.request import Request
from dreamtray.styles import load_registry, load_style_file


@pytest.fixture
def folder(tmp_path):
    write_files(tmp_path / "styles")
    return tmp_path / "styles"


@pytest.mark.parametrize("name", list(FILES))
def test_each_file_loads_the_styles_a1111_loads_and_applies_them_alike(folder, name):
    path = folder / name
    reference = a1111_styles(path)
    problems: list[str] = []
    ours = {style.name: style for style in load_style_file(path, problems)}
    assert problems == []
    assert sorted(ours) == sorted(reference)
    for style_name, (prompt, negative) in reference.items():
        styled = ours[style_name]
        assert a1111_merge(prompt or "", "a red fox") == a1111_merge(styled.prompt, "a red fox")
        assert a1111_merge(negative or "", "") == a1111_merge(styled.negative_prompt, "")


def test_all_files_together_load_as_many_styles_as_a1111(folder):
    registry = load_registry(None, folder)
    expected = sum(len(a1111_styles(path)) for path in sorted(folder.iterdir()))
    assert len(registry) == expected == 676
    assert registry.problems == []
    styled = registry.apply(Request(prompt="a red fox", styles=("Moody, dark", "cinematic")))
    merged = a1111_merge("cinematic still of {prompt}", a1111_merge('{prompt}, moody "noir" light', "a red fox"))
    assert styled.prompt == merged == 'cinematic still of a red fox, moody "noir" light'
    assert styled.negative_prompt == "bright, cheerful, cartoon"


def test_the_big_file_keeps_its_row_with_a_stray_quote(folder):
    look = load_registry(None, folder).get("look 333")
    assert look.prompt == '{prompt}, look 333, 35mm film"' and look.negative_prompt == "blurry, grain 333"
    assert big_file_with_one_bad_quote().count("\n") == 666


def test_rows_that_make_no_style_are_skipped_with_their_line_and_the_rest_loads(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(
        'name,prompt,negative_prompt\nGood,{prompt} one,\n,nameless,\n"Two\nlines",x,\nAlso good,{prompt} two,\n',
        encoding="utf-8",
    )
    registry = load_registry(None, tmp_path)
    assert [style.name for style in registry] == ["Also good", "Good"]
    assert len(registry.problems) == 2
    assert f"{path}: line 3: style ''" in registry.problems[0] and registry.problems[0].endswith("skipped")
    assert f"{path}: line 4: style 'Two\\nlines'" in registry.problems[1]


def test_a_row_the_csv_module_cannot_read_is_skipped_and_the_file_goes_on(tmp_path):
    import csv

    path = tmp_path / "huge.csv"
    limit = csv.field_size_limit()
    path.write_text(f"name,prompt\nFirst,a {{prompt}}\nHuge,{'x' * (limit + 1)}\nLast,{{prompt}} z\n", encoding="utf-8")
    registry = load_registry(None, tmp_path)
    assert sorted(style.name for style in registry) == ["First", "Last"]
    assert "line 3: skipped: not valid CSV: field larger than field limit" in registry.problems[0]
    assert len(a1111_styles(path)) == 1, "A1111 stops at the bad row; dreamtray reads on"


def test_a_name_with_commas_resolves_from_comma_separated_text(folder):
    registry = load_registry(None, folder)
    styled = registry.apply(Request(prompt="a red fox", styles="Moody, dark, cinematic"))
    assert styled.styles == ("Moody, dark", "Cinematic")


def test_fooocus_json_as_fooocus_reads_it_and_its_display_names_resolve(tmp_path):
    import json

    entries = [
        {"name": "sai-cinematic", "prompt": "cinematic film still {prompt}", "negative_prompt": "anime"},
        {"name": "sai-3d-model", "prompt": "professional 3d model {prompt}"},
        {"name": "mre-dark-cyberpunk", "prompt": "{prompt}, dark", "negative_prompt": "bright", "extra": 1},
        {"name": "Fooocus Sharp", "negative_prompt": "(blur, blurry, bokeh)"},
    ]
    (tmp_path / "sdxl_styles_sai.json").write_text(json.dumps(entries), encoding="utf-8")
    registry = load_registry(None, tmp_path)
    assert [style.name for style in registry] == [
        "Fooocus Sharp",
        "MRE Dark Cyberpunk",
        "SAI 3D Model",
        "SAI Cinematic",
    ]
    for typed in ("SAI Cinematic", "sai-cinematic", "sai_cinematic", "SAI  CINEMATIC"):
        assert registry.get(typed).name == "SAI Cinematic"
    styled = registry.apply(Request(prompt="a fox", negative_prompt="text", styles=("sai-cinematic", "fooocus sharp")))
    assert styled.prompt == "cinematic film still a fox"
    assert styled.negative_prompt == "text, anime, (blur, blurry, bokeh)", "grouped terms kept whole"
    assert registry.problems == []


def test_the_tray_reports_an_unknown_style_with_the_closest_before_any_engine(fresh_home, monkeypatch):
    from dreamtray import route
    from dreamtray.app import App

    styles = fresh_home / "data" / "dreamtray" / "styles"
    styles.mkdir(parents=True)
    (styles / "mine.csv").write_text("name,prompt\nWatercolor,watercolor of {prompt}\nInk,ink {prompt}\n", "utf-8")
    config = fresh_home / "config.toml"
    config.write_text('model = "tiny"\nstyle = "Watercolr"\n', encoding="utf-8")
    monkeypatch.setenv("DREAMTRAY_PLUGINS", "")
    app = App(config)
    report = route.run_task(app, route.Task("clipboard", "a fox"))
    assert (report.ok, report.title) == (False, "The chosen style is a problem")
    assert (
        report.body == "unknown style 'Watercolr'; the closest are 'Watercolor', 'Ink' (`dreamtray styles` lists all 2)"
    )
    assert "local_engine" not in vars(app) and "engine" not in vars(app), "no engine was started"
