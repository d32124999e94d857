"""The desktop's needs: found or missing, with the fix for this system's package manager."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dreamtray.cli import setup as commands_setup
from dreamtray.desktop import check as desktop_check

APPINDICATOR = "appindicatorsupport@rgcjonas.gmail.com"


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Put only the named commands on PATH; each prints its given output."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    for name in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "XDG_CURRENT_DESKTOP"):
        monkeypatch.delenv(name, raising=False)

    def install(name: str, output: str = "", rc: int = 0) -> None:
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\nprintf '%b' '{output}'\nexit {rc}\n")
        tool.chmod(0o755)

    return install


def by_need(findings) -> dict[str, desktop_check.Finding]:
    return {f.need.split(" (")[0].split(",")[0]: f for f in findings}


def test_x11_clipboard_found_or_missing_with_the_right_install_command(tools) -> None:
    tools("apt-get")
    clip = by_need(desktop_check.check())["clipboard tool for X11"]
    assert clip.ok is False and clip.fix == "sudo apt install xclip"
    tools("xclip")
    assert by_need(desktop_check.check())["clipboard tool for X11"].ok is True


def test_wayland_wants_wl_clipboard(tools, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    tools("dnf")
    tools("xclip")
    clip = by_need(desktop_check.check())["clipboard tool for Wayland"]
    assert clip.ok is False and clip.fix == "sudo dnf install wl-clipboard"
    tools("wl-copy")
    tools("wl-paste")
    assert by_need(desktop_check.check())["clipboard tool for Wayland"].ok is True


def test_gnome_needs_the_appindicator_extension(tools, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "ubuntu:GNOME")
    tools("pacman")
    tray = by_need(desktop_check.check())["GNOME AppIndicator extension"]
    assert tray.ok is None and "could not ask GNOME Shell" in tray.fix

    tools("gnome-extensions", "ding@rastersoft.com\\n")
    tray = by_need(desktop_check.check())["GNOME AppIndicator extension"]
    assert tray.ok is False
    assert tray.fix == (
        f"sudo pacman -S gnome-shell-extension-appindicator, log out and in, then: "
        f"gnome-extensions enable {APPINDICATOR}"
    )
    assert "MISSING GNOME AppIndicator extension" in tray.line() and "-> sudo pacman -S" in tray.line()

    tools("gnome-extensions", f"ding@rastersoft.com\\n{APPINDICATOR}\\n")
    assert by_need(desktop_check.check())["GNOME AppIndicator extension"].ok is True


def test_other_desktops_are_not_asked_about_gnome(tools, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "KDE")
    assert "GNOME AppIndicator extension" not in by_need(desktop_check.check())


def test_missing_pygobject_says_how_to_get_it(tools, monkeypatch: pytest.MonkeyPatch) -> None:
    real = desktop_check.importlib.util.find_spec
    monkeypatch.setattr(desktop_check.importlib.util, "find_spec", lambda name: None if name == "gi" else real(name))
    tools("zypper")
    gi = by_need(desktop_check.check())["PyGObject"]
    assert gi.ok is False and gi.fix.startswith("sudo zypper install python3-gobject, then run the installer again")


def test_no_package_manager_gives_a_plain_hint(tools) -> None:
    assert desktop_check.install_hint("xclip") == (
        "install the package that provides xclip with your system's package manager"
    )


def test_mac_accessibility_names_the_python_to_allow() -> None:
    finding = desktop_check._mac_accessibility()
    assert finding.ok is None  # no ApplicationServices framework on this system
    assert str(Path(sys.executable).resolve()) in finding.fix and "Accessibility" in finding.fix


def test_command_prints_each_finding(tools) -> None:
    tools("xclip")
    result = CliRunner().invoke(commands_setup.setup_group, ["desktop-check"])
    assert result.exit_code == 0
    assert "ok      clipboard tool for X11 (xclip)\n" in result.output
