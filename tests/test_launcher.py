"""The menu launcher on each platform: files written where the desktop looks, in forms it accepts."""

from __future__ import annotations

import os
import plistlib
import stat
import subprocess
import sys
from pathlib import Path

from PIL import Image

from dreamtray.desktop import icon_files, launcher


def validate(path: Path) -> str:
    """desktop-file-validate's complaints about `path` ('' when it has none)."""
    result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
    return f"rc={result.returncode} {result.stdout}{result.stderr}" if result.returncode or result.stdout else ""


def test_launch_command_runs_the_tray_from_this_environment() -> None:
    command = launcher.launch_command()
    assert command == [str(Path(sys.executable).parent / "dreamtray"), "run"]
    assert os.access(command[0], os.X_OK)


def test_linux_launcher_installs_a_valid_entry_and_the_icons(fresh_home: Path) -> None:
    written = launcher.install()
    entry = fresh_home / "data" / "applications" / "dreamtray.desktop"
    assert written[0] == entry and launcher.LinuxLauncher().installed()
    assert validate(entry) == ""
    text = entry.read_text()
    assert f"Exec={Path(sys.executable).parent / 'dreamtray'} run\n" in text
    assert "Icon=dreamtray\n" in text
    for size in icon_files.APP_SIZES:
        icon = fresh_home / "data" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "dreamtray.png"
        assert icon in written
        with Image.open(icon) as image:
            assert image.size == (size, size)

    removed = launcher.remove()
    assert set(removed) == set(written)
    assert not entry.exists() and not launcher.LinuxLauncher().installed()
    assert launcher.remove() == []


def test_exec_quoting_survives_odd_paths(tmp_path: Path) -> None:
    command = ['/home/ann lee/100% "real" $HOME/bin\\dreamtray', "run"]
    assert launcher.exec_value(command) == r'"/home/ann lee/100%% \\"real\\" \\$HOME/bin\\\\dreamtray" run'
    assert launcher.exec_value(["/usr/bin/dreamtray", "run"]) == "/usr/bin/dreamtray run"
    entry = tmp_path / "odd.desktop"
    entry.write_text(launcher.desktop_entry(command))
    assert validate(entry) == ""
    # GLib, which desktops use to launch entries, reads back the very same arguments.
    from gi.repository import GLib

    keyfile = GLib.KeyFile()
    keyfile.load_from_file(str(entry), GLib.KeyFileFlags.NONE)
    exec_line = keyfile.get_string("Desktop Entry", "Exec")
    assert GLib.shell_parse_argv(exec_line.replace("%%", "%"))[1] == command


def test_mac_app_bundle_runs_the_command_and_carries_the_icon(fresh_home: Path, tmp_path: Path) -> None:
    tray = tmp_path / "my apps" / "fake tray"
    tray.parent.mkdir()
    tray.write_text('#!/bin/sh\nprintf "%s|" "$@"\n')
    tray.chmod(0o755)

    app = launcher.MacLauncher()
    assert app.install([str(tray), "run"]) == [fresh_home / "Applications" / "dreamtray.app"]
    contents = app.bundle / "Contents"
    info = plistlib.loads((contents / "Info.plist").read_bytes())
    assert info["CFBundleExecutable"] == "dreamtray" and info["CFBundleIdentifier"] == launcher.BUNDLE_ID
    assert info["CFBundlePackageType"] == "APPL" and info["LSUIElement"] is True
    assert (
        contents / "Resources" / f"{info['CFBundleIconFile']}.icns"
    ).read_bytes() == icon_files.app_icns().read_bytes()
    stub = contents / "MacOS" / info["CFBundleExecutable"]
    assert stub.stat().st_mode & stat.S_IXUSR
    assert subprocess.run([str(stub)], capture_output=True, text=True).stdout == "run|"

    assert app.remove() == [app.bundle] and not app.bundle.exists()


def test_windows_shortcut_values(tmp_path: Path) -> None:
    command = [r"C:\Users\Ann Lee\AppData\Local\dreamtray\venv\Scripts\pythonw.exe", "-m", "dreamtray", "run"]
    link = Path(r"C:\Users\Ann Lee\AppData\Roaming\Microsoft\Windows\Start Menu\Programs\dreamtray.lnk")
    values = launcher.shortcut_values(command, link, Path(r"C:\dt\dreamtray.ico"), Path(r"C:\Users\Ann Lee"))
    assert values == {
        "DREAMTRAY_LINK": str(link),
        "DREAMTRAY_TARGET": command[0],
        "DREAMTRAY_ARGUMENTS": "-m dreamtray run",
        "DREAMTRAY_ICON": r"C:\dt\dreamtray.ico,0",
        "DREAMTRAY_WORKDIR": r"C:\Users\Ann Lee",
        "DREAMTRAY_DESCRIPTION": launcher.SUMMARY,
    }
