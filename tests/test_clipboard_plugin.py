"""The clipboard plugin, loaded through its entry point, puts the gallery PNG on a real X clipboard."""

from __future__ import annotations

import pluggy
import pytest
from PIL import Image, PngImagePlugin

import dreamtray.hookspecs
from dreamtray import Action, GeneratedImage, Request


@pytest.fixture
def clipboard_action() -> Action:
    manager = pluggy.PluginManager("dreamtray")
    manager.add_hookspecs(dreamtray.hookspecs)
    assert manager.load_setuptools_entrypoints("dreamtray", name="clipboard") == 1
    actions: list[Action] = []
    manager.hook.register_actions(register=actions.append)
    assert [action.name for action in actions] == ["clipboard"]
    return actions[0]


@pytest.fixture
def gallery_png(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red fox\nSteps: 4, Seed: 7")
    path = tmp_path / "00001-7.png"
    image = Image.new("RGBA", (64, 48), (30, 120, 200, 255))
    image.putpixel((3, 5), (255, 0, 0, 128))
    image.save(path, pnginfo=info)
    return GeneratedImage(path=path, request=Request(prompt="a red fox", seed=7))


def test_action_offers_the_gallery_file_byte_for_byte_as_image_png(xsession, clipboard_action, gallery_png):
    message = clipboard_action.run(gallery_png)
    assert "clipboard" in message
    targets = xsession.run(["xclip", "-selection", "clipboard", "-t", "TARGETS", "-o"], text=True, check=True)
    assert "image/png" in targets.stdout.split()
    pasted = xsession.run(["xclip", "-selection", "clipboard", "-t", "image/png", "-o"], check=True)
    assert pasted.stdout == gallery_png.path.read_bytes()


def test_a_later_copy_replaces_the_image(xsession, clipboard_action, gallery_png, tmp_path):
    clipboard_action.run(gallery_png)
    second = tmp_path / "second.png"
    Image.new("RGB", (64, 64), (0, 255, 0)).save(second)
    clipboard_action.run(GeneratedImage(path=second, request=gallery_png.request))
    pasted = xsession.run(["xclip", "-selection", "clipboard", "-t", "image/png", "-o"], check=True)
    assert pasted.stdout == second.read_bytes()


def test_pixel_path_used_on_windows_and_macos_keeps_every_pixel(xsession, gallery_png):
    import io

    from dreamtray_plugins.clipboard.png import _copy_pixels

    _copy_pixels(gallery_png.path, detach=False)
    pasted = xsession.run(["xclip", "-selection", "clipboard", "-t", "image/png", "-o"], check=True)
    with Image.open(io.BytesIO(pasted.stdout)) as got, gallery_png.open() as want:
        assert got.size == want.size
        assert got.convert("RGBA").tobytes() == want.convert("RGBA").tobytes()


def test_a_broken_connection_to_the_display_is_opened_again(xsession, clipboard_action, gallery_png, tmp_path):
    from dreamtray_plugins.clipboard import png

    clipboard_action.run(gallery_png)
    kept = png._x[1]
    kept.close()  # as when the X server went away and came back
    second = tmp_path / "second.png"
    Image.new("RGB", (64, 64), (0, 0, 255)).save(second)
    clipboard_action.run(GeneratedImage(path=second, request=gallery_png.request))
    assert png._x[1] is not kept
    pasted = xsession.run(["xclip", "-selection", "clipboard", "-t", "image/png", "-o"], check=True)
    assert pasted.stdout == second.read_bytes()
