"""`dreamtray run` for real under Xvfb: one tray host for the module, docked in trayer, driven by real key
presses (xdotool), its real GTK menu and `dreamtray trigger`; images made by the tiny model."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image, ImageChops, ImageGrab
from tray_process import (
    TrayProcess,
    find_docked_icon,
    newest,
    open_menu_and_pick,
    press,
    read_clipboard_png,
    serve_primary,
    tray_home,
    wait_gone,
    window_title,
)
from xsession import wait_until

from dreamtray.images.metadata import read_metadata

# From the bottom of the menu: Quit, Plugins, Start at login, Unload model, Pause hotkeys, Open gallery, Engine, Style.
UP_TO = {
    "quit": 1, "wallpapers": 2, "plugins": 3, "autostart": 4, "unload": 5, "pause": 6, "gallery": 7, "engine": 8,
    "style": 9,
}  # fmt: skip


@pytest.fixture(scope="module")
def host(tray, tmp_path_factory):
    root = tmp_path_factory.mktemp("tray-home")
    tools = root / "tools"  # an xdg-open that notes what it was asked to open
    tools.mkdir()
    opener = tools / "xdg-open"
    opener.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{root}/opened"\n')
    opener.chmod(0o755)
    home = tray_home(
        root,
        tray,
        # balanced: the full VAE draws the last step, so a preview comes at both steps (see the hotkey test)
        config='[engine]\nquality = "balanced"\n',
        plugins="clipboard,wallpaper,styles,remote",
        PATH=f"{tools}{os.pathsep}{os.environ['PATH']}",
    )
    process = TrayProcess(home)
    icon, seconds = process.wait_docked()
    process.docked, process.visible_after = icon, seconds
    print(f"icon docked {seconds:.2f} s after launch")
    process.wait_started()
    yield process
    process.stop()
    home.stop_engine()


def gallery(host) -> list[Path]:
    return newest(host.home.gallery)


def wait_new_image(host, before: list[Path], timeout: float = 180) -> Path:
    new = wait_until(lambda: [p for p in gallery(host) if p not in before], timeout, "a new gallery image", 0.1)
    host.wait_idle()
    return new[-1]


def menu_up(tray, host, item: str) -> None:
    open_menu_and_pick(tray, host.docked, ["Up"] * UP_TO[item] + ["Return"])


def test_icon_docks_at_once_and_the_host_never_imports_torch(host, tray):
    assert host.docked.width > 0 and host.docked.height > 0
    status = host.status()
    assert status["pid"] == host.pid and status["visible"] and status["backend"] == "pystray._gtk"
    assert status["torch_imported"] is False
    maps = Path(f"/proc/{host.pid}/maps").read_text()
    assert "libtorch" not in maps and "torch/lib" not in maps
    assert status["hotkeys"] == {"<ctrl>+<alt>+i": "clipboard", "<ctrl>+<alt>+w": "wallpaper"}
    assert status["hotkeys_listening"] is True
    wait_until(lambda: window_title(tray.display, host.docked.window) == "dreamtray: ready", 10, "the ready tooltip")


def test_the_engine_runs_in_the_background_as_a_child_of_the_tray(host):
    state = wait_until(lambda: (host.home.root / "state/dreamtray/engine.json").is_file(), 60, "the engine service")
    assert state
    info = json.loads((host.home.root / "state/dreamtray/engine.json").read_text())
    assert info["pid"] in [p.pid for p in host.descendants()]


def test_a_second_run_says_it_is_already_running(host):
    result = host.home.run("run", timeout=60)
    assert result.returncode == 1
    assert "dreamtray is already running" in result.stderr
    assert host.process.poll() is None


def test_the_control_socket_is_private(host):
    path = host.home.root / "runtime/dreamtray/control.sock"
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_hotkey_turns_the_primary_selection_into_a_png_on_the_clipboard(host, tray, notifications):
    serve_primary(tray, "a lighthouse at dusk, oil painting")
    before = gallery(host)
    titles: list[str] = []
    watching = threading.Event()

    def watch_title() -> None:
        while not watching.is_set():
            titles.append(window_title(tray.display, host.docked.window))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_title)
    watcher.start()
    try:
        press(tray, "ctrl+alt+i")
        image = wait_new_image(host, before)
    finally:
        watching.set()
        watcher.join()
    assert read_metadata(image).parameters.prompt == "a lighthouse at dusk, oil painting"
    png = wait_until(
        lambda: (data := read_clipboard_png(tray)) == image.read_bytes() and data, 10, "the PNG on the clipboard"
    )
    assert png == image.read_bytes()
    assert host.status()["heavy_modules"] == [], "a whole hotkey job loads no engine side into the tray"
    maps = Path(f"/proc/{host.pid}/maps").read_text()
    assert "libtorch" not in maps and "torch/lib" not in maps
    busy = [t for t in titles if t.startswith("dreamtray: making an image")]
    assert busy, f"the title never showed the job: {sorted(set(titles))}"
    assert any(t.startswith("dreamtray: making an image 50%") or "100%" in t for t in busy), sorted(set(busy))
    assert titles[-1].startswith("dreamtray: ready")
    assert host.status()["previews"] == 2, "the icon showed the image as it formed, at both steps"
    done = [line for line in host.log_text().splitlines() if "clipboard job (hotkey) done" in line]
    steps = r"wait \d+ ms, to engine \d+ ms, engine \d+ ms \(compute \d+ ms\), result \d+ ms, save \d+ ms, "
    steps += r"action \d+ ms, after \d+ ms"
    assert done and re.search(steps + "$", done[-1]), f"the log times each step of the job: {done}"
    shown = wait_until(
        lambda: [n for n in notifications() if n["summary"] == "Your image is ready"], 10, "the notification"
    )
    assert "clipboard" in shown[0]["body"]
    assert shown[0]["icon_path"] == str(image), "the notification shows the image"
    assert "libtorch" not in Path(f"/proc/{host.pid}/maps").read_text()


def test_trigger_clipboard_waits_and_reports_the_image(host, tray):
    serve_primary(tray, "a bowl of cherries")
    result = host.trigger("clipboard", "--wait")
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == host.home.gallery and path == gallery(host)[-1]
    assert "clipboard" in result.stdout
    assert wait_until(lambda: read_clipboard_png(tray) == path.read_bytes(), 10, "the PNG on the clipboard")


def test_an_empty_selection_tells_a_waiting_trigger_and_starts_no_job(host, tray, notifications):
    serve_primary(tray, "   \n\t ")
    before = gallery(host)
    result = host.trigger("clipboard", "--wait")  # without --wait, the prompt box would ask (test_tray_queue)
    assert result.returncode == 1
    assert "Nothing selected" in result.stderr
    assert gallery(host) == before and host.status()["pending"] == 0
    wait_until(lambda: any(n["summary"] == "Nothing selected" for n in notifications()), 10, "the notification")


def test_a_huge_selection_is_cut_and_the_user_is_told(host, tray, notifications):
    serve_primary(tray, "stars " * 400)
    result = host.trigger("clipboard", "--wait")
    assert result.returncode == 0, result.stderr
    prompt = read_metadata(gallery(host)[-1]).parameters.prompt
    assert len(prompt) <= 1000 and prompt.startswith("stars stars")
    wait_until(lambda: any(n["summary"] == "The selection was cut" for n in notifications()), 10, "the notification")


def test_wallpaper_hotkey_paints_the_root_window_with_the_saved_wallpaper(host, tray, notifications):
    serve_primary(tray, "rolling green hills")
    wallpapers = host.home.root / "data/dreamtray/wallpapers"
    before = newest(wallpapers, "wallpaper-*.png")
    press(tray, "ctrl+alt+w")
    new = wait_until(lambda: [p for p in newest(wallpapers, "wallpaper-*.png") if p not in before], 180, "a wallpaper")
    host.wait_idle()
    wait_until(lambda: any(n["summary"] == "Your image is ready" for n in notifications()), 10, "the notification")
    with Image.open(new[-1]) as saved:
        expected = saved.convert("RGB")
    assert expected.size == (800, 600)
    panel = _tray_panel_box(tray)
    expected.paste((0, 0, 0), panel)  # trayer's panel covers part of the root window

    def differing_box():
        """What differs from the saved wallpaper once no notification or tooltip covers the screen."""
        tray.run(["dunstctl", "close-all"], check=True)
        tray.run(["xdotool", "mousemove", "0", "599"], check=True)  # the pointer may rest on the icon: its tooltip
        shown = ImageGrab.grab(xdisplay=tray.display).convert("RGB")
        shown.paste((0, 0, 0), panel)
        return ImageChops.difference(shown, expected).getbbox()

    wait_until(lambda: differing_box() is None, 10, "the root window to show the saved wallpaper", interval=0.2)
    source = gallery(host)[-1]
    with Image.open(source) as generated:
        assert abs(generated.width / generated.height - 800 / 600) < 0.05, generated.size


def test_new_wallpaper_from_the_last_prompt(host):
    before = gallery(host)
    result = host.trigger("wallpaper-again", "--wait")
    assert result.returncode == 0, result.stderr
    [made] = [p for p in gallery(host) if p not in before]
    assert read_metadata(made).parameters.prompt == "rolling green hills"


def test_unknown_trigger_action_names_the_known_ones(host):
    result = host.trigger("frobnicate")
    assert result.returncode == 1
    assert "No action called 'frobnicate'" in result.stderr and "clipboard" in result.stderr


def test_a_failed_job_shows_the_error_state_and_tells_why(host, tray, notifications):
    result = host.trigger("clipboard", "--prompt", "   ", "--wait")
    assert result.returncode == 1
    assert "The request is not valid" in result.stderr and "prompt is empty" in result.stderr
    wrong = "dreamtray: something went wrong (The request is not valid)"
    wait_until(lambda: window_title(tray.display, host.docked.window) == wrong, 10, "the title (GTK sets it)")
    assert host.status()["state"] == "error"
    [shown] = wait_until(
        lambda: [n for n in notifications() if n["summary"] == "The request is not valid"], 10, "the notification"
    )
    assert "prompt is empty" in shown["body"]
    assert host.process.poll() is None


def test_open_gallery_from_the_menu(host, tray):
    opened = host.home.root / "opened"
    menu_up(tray, host, "gallery")
    wait_until(opened.is_file, 10, "xdg-open to run")
    assert opened.read_text().splitlines() == [str(host.home.gallery)]


def test_the_menu_pauses_the_hotkeys(host, tray):
    menu_up(tray, host, "pause")
    status = wait_until(lambda: (s := host.status())["paused"] and s, 10, "the hotkeys to pause")
    assert status["hotkeys_listening"] is False
    assert window_title(tray.display, host.docked.window).endswith("hotkeys paused")
    serve_primary(tray, "a quiet pond")
    before = gallery(host)
    press(tray, "ctrl+alt+i")
    time.sleep(1.0)
    assert host.status()["pending"] == 0 and gallery(host) == before
    menu_up(tray, host, "pause")
    wait_until(lambda: host.status()["hotkeys_listening"], 10, "the hotkeys to listen again")
    press(tray, "ctrl+alt+i")
    assert read_metadata(wait_new_image(host, before)).parameters.prompt == "a quiet pond"


def test_the_style_menu_is_a_radio_choice_saved_in_the_config(host, tray, tmp_path):
    from dreamtray.plugins import PluginHost
    from dreamtray.styles import load_registry

    config = host.home.root / "config/dreamtray/config.toml"
    # Style > (None, Illustration >, ...): the first style of the first pack.
    open_menu_and_pick(tray, host.docked, ["Up"] * UP_TO["style"] + ["Right", "Down", "Right", "Return"])
    chosen = wait_until(lambda: "style" in config.read_text() and config.read_text(), 10, "the style in the config")
    first = next(iter(load_registry(PluginHost(only=["styles"]), folder=tmp_path)))  # sorted by pack, then name
    assert f'style = "{first.name}"' in chosen
    result = host.trigger("clipboard", "--prompt", "a teapot", "--wait")
    assert result.returncode == 0, result.stderr
    assert read_metadata(gallery(host)[-1]).parameters.prompt != "a teapot", "the style shaped the prompt"
    # Style > None
    open_menu_and_pick(tray, host.docked, ["Up"] * UP_TO["style"] + ["Right", "Return"])
    wait_until(lambda: 'style = ""' in config.read_text(), 10, "no style in the config")


def test_the_wallpaper_mode_is_a_radio_choice_saved_in_the_config(host, tray):
    config = host.home.root / "config/dreamtray/config.toml"
    # Wallpapers > (Each monitor its own image, One image across all monitors, The same image on each monitor)
    open_menu_and_pick(tray, host.docked, ["Up"] * UP_TO["wallpapers"] + ["Right", "Down", "Return"])
    wait_until(lambda: '[plugins.wallpaper]\nmode = "span"' in config.read_text(), 10, "span in the config")
    open_menu_and_pick(tray, host.docked, ["Up"] * UP_TO["wallpapers"] + ["Right", "Return"])
    wait_until(lambda: 'mode = "per-monitor"' in config.read_text(), 10, "per-monitor in the config")


def test_refine_last_image_with_the_selection(host, tray):
    from dreamtray.images.lineage import LINEAGE_KEY, image_texts

    serve_primary(tray, "a red barn")
    original = Path(host.trigger("clipboard", "--wait").stdout.strip().splitlines()[-1])
    serve_primary(tray, "make it snowy")
    result = host.trigger("refine-last", "--wait")
    assert result.returncode == 0, result.stderr
    refined = Path(result.stdout.strip().splitlines()[-1])
    assert refined.parent == original.parent and refined != original and refined.exists()
    lineage = json.loads(image_texts(refined.read_bytes())[LINEAGE_KEY])
    assert lineage[0]["file"] == original.name
    assert read_metadata(refined).parameters.prompt.startswith("make it snowy")
    assert wait_until(lambda: read_clipboard_png(tray) == refined.read_bytes(), 10, "the refined PNG on the clipboard")


def test_the_engine_menu_switches_the_back_end_and_back(host, tray):
    config = host.home.root / "config/dreamtray/config.toml"
    # Engine > (local, a1111, openai, remote): remote, which has no address configured here.
    open_menu_and_pick(tray, host.docked, ["Up"] * UP_TO["engine"] + ["Right", "Down", "Down", "Down", "Return"])
    wait_until(lambda: 'backend = "remote"' in config.read_text(), 10, "the remote engine in the config")
    failed = host.trigger("clipboard", "--prompt", "a kite", "--wait")
    assert failed.returncode == 1 and "remote" in failed.stderr
    open_menu_and_pick(tray, host.docked, ["Up"] * UP_TO["engine"] + ["Right", "Return"])
    wait_until(lambda: 'backend = "local"' in config.read_text(), 10, "the local engine in the config")
    assert host.trigger("clipboard", "--prompt", "a kite", "--wait").returncode == 0


def test_start_at_login_from_the_menu(host, tray):
    entry = host.home.root / "config/autostart/dreamtray.desktop"
    assert not entry.exists()
    menu_up(tray, host, "autostart")
    wait_until(entry.is_file, 10, "the autostart entry")
    assert "dreamtray" in entry.read_text()
    menu_up(tray, host, "autostart")
    wait_until(lambda: not entry.exists(), 10, "the autostart entry to go")


def test_unload_from_the_menu_frees_the_model(host, tray):
    from dreamtray.engine.client import ServiceEngine

    info = json.loads((host.home.root / "state/dreamtray/engine.json").read_text())
    token = (host.home.root / "data/dreamtray/engine-token").read_text().strip()
    engine = ServiceEngine(info["url"], token)
    try:
        assert engine.health()["worker_pid"] is not None
        menu_up(tray, host, "unload")
        wait_until(lambda: engine.health()["worker_pid"] is None, 60, "the worker to go")
    finally:
        engine.close()


def test_quit_from_the_menu_stops_the_engine_and_leaves_no_process(host, tray):
    engine_pids = [p.pid for p in host.descendants() if "python" in p.name()]
    assert engine_pids, "the engine service runs under the tray"
    menu_up(tray, host, "quit")
    assert host.process.wait(timeout=90) == 0
    wait_gone(engine_pids)
    assert not (host.home.root / "runtime/dreamtray/control.sock").exists()
    assert not (host.home.root / "state/dreamtray/engine.json").exists()
    assert find_docked_icon(tray.display, host.pid) is None
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline", "environ"])
        if (p.info["environ"] or {}).get("XDG_STATE_HOME") == host.home.env["XDG_STATE_HOME"]
        and p.info["cmdline"]
        and p.info["cmdline"][0] != "xclip"
    ]
    assert leftovers == [], [p.info["cmdline"] for p in leftovers]
    result = host.trigger("clipboard")
    assert result.returncode == 1 and "dreamtray is not running" in result.stderr


def _tray_panel_box(session) -> tuple[int, int, int, int]:
    out = session.run(["xwininfo", "-name", "panel"], text=True, check=True).stdout
    values = {
        line.split(":")[0].strip(): int(line.split(":")[1])
        for line in out.splitlines()
        if line.strip().startswith(("Absolute upper-left X", "Absolute upper-left Y", "Width", "Height"))
    }
    x, y = values["Absolute upper-left X"], values["Absolute upper-left Y"]
    return x, y, x + values["Width"], y + values["Height"]
