"""Start at login on each platform, and the `autostart on|off|status` commands."""

from __future__ import annotations

import plistlib
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from dreamtray.cli import setup as commands_setup
from dreamtray.desktop import autostart, launcher

COMMAND = ["/home/ann/.local/share/dreamtray/venv/bin/dreamtray", "run"]


def test_linux_entry_is_written_valid_and_removed(fresh_home: Path) -> None:
    entry = fresh_home / "config" / "autostart" / "dreamtray.desktop"
    assert autostart.is_enabled() is False
    assert autostart.enable() == str(entry)
    assert autostart.is_enabled() is True
    check = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
    assert (check.returncode, check.stdout) == (0, "")
    text = entry.read_text()
    assert f"Exec={launcher.exec_value(launcher.launch_command())}\n" in text
    assert "X-GNOME-Autostart-enabled=true\n" in text

    assert autostart.disable() is True
    assert not entry.exists() and autostart.is_enabled() is False
    assert autostart.disable() is False


@pytest.mark.parametrize("switch", ["Hidden=true", "X-GNOME-Autostart-enabled=false"])
def test_linux_honours_the_desktops_own_switch(fresh_home: Path, switch: str) -> None:
    autostart.enable()
    entry = Path(autostart.where())
    entry.write_text(entry.read_text().replace("X-GNOME-Autostart-enabled=true", switch))
    assert autostart.is_enabled() is False
    autostart.enable()  # switching on again wins over the desktop's switch
    assert autostart.is_enabled() is True


def test_commands_switch_it_on_and_off(fresh_home: Path) -> None:
    runner = CliRunner()
    group = commands_setup.setup_group
    entry = fresh_home / "config" / "autostart" / "dreamtray.desktop"
    assert runner.invoke(group, ["autostart", "status"]).output == "off\n"
    result = runner.invoke(group, ["autostart", "on"])
    assert (result.exit_code, result.output) == (0, f"dreamtray will start at login ({entry}).\n")
    assert runner.invoke(group, ["autostart", "status"]).output == f"on ({entry})\n"
    assert runner.invoke(group, ["autostart", "off"]).output == "dreamtray will no longer start at login.\n"
    assert not entry.exists()
    assert runner.invoke(group, ["autostart", "off"]).output == "dreamtray was not set to start at login.\n"
    assert [c.name for c in commands_setup.COMMANDS] == ["autostart", "launcher", "desktop-check"]


def test_unwritable_place_gives_a_clear_error(fresh_home: Path) -> None:
    (fresh_home / "config").write_text("a file where the folder should be")
    result = CliRunner().invoke(commands_setup.setup_group, ["autostart", "on"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: could not switch start at login on:")


def test_launcher_install_keeps_an_enabled_autostart_current(fresh_home: Path) -> None:
    entry = Path(autostart.where())
    entry.parent.mkdir(parents=True)
    entry.write_text(launcher.desktop_entry(["/old/place/dreamtray", "run"], autostart=True))
    result = CliRunner().invoke(commands_setup.setup_group, ["launcher", "install"])
    assert result.exit_code == 0, result.output
    assert "/old/place" not in entry.read_text()
    assert launcher.exec_value(launcher.launch_command()) in entry.read_text()


def test_mac_launch_agent(fresh_home: Path) -> None:
    agent = autostart.MacAutostart()
    assert agent.is_enabled() is False
    agent.enable(COMMAND)
    plist = fresh_home / "Library" / "LaunchAgents" / "org.dreamtray.dreamtray.plist"
    assert agent.where == plist and agent.is_enabled() is True
    data = plistlib.loads(plist.read_bytes())
    assert data["Label"] == "org.dreamtray.dreamtray"
    assert data["ProgramArguments"] == COMMAND
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert Path(data["StandardErrorPath"]).parent.is_dir()
    assert agent.disable() is True and not plist.exists() and agent.is_enabled() is False


class FakeRegistry(types.ModuleType):
    """Just enough of winreg, over a dict, to run the Windows code paths here."""

    HKEY_CURRENT_USER, KEY_SET_VALUE, REG_SZ = "HKCU", 2, 1

    def __init__(self) -> None:
        super().__init__("winreg")
        self.keys: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}

    class _Key:
        def __init__(self, values):
            self.values = values

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

    def OpenKey(self, root, path, reserved=0, access=0):  # noqa: N802 (winreg's names)
        if (root, path) not in self.keys:
            raise FileNotFoundError(path)
        return self._Key(self.keys[(root, path)])

    def CreateKey(self, root, path):  # noqa: N802
        return self._Key(self.keys.setdefault((root, path), {}))

    def SetValueEx(self, key, name, reserved, kind, value):  # noqa: N802
        key.values[name] = (kind, value)

    def QueryValueEx(self, key, name):  # noqa: N802
        if name not in key.values:
            raise FileNotFoundError(name)
        return key.values[name][1], key.values[name][0]

    def DeleteValue(self, key, name):  # noqa: N802
        if key.values.pop(name, None) is None:
            raise FileNotFoundError(name)


def test_windows_run_key(monkeypatch: pytest.MonkeyPatch) -> None:
    command = [r"C:\Users\Ann Lee\AppData\Local\dreamtray\venv\Scripts\pythonw.exe", "-m", "dreamtray", "run"]
    assert autostart.run_value(command) == (
        r'"C:\Users\Ann Lee\AppData\Local\dreamtray\venv\Scripts\pythonw.exe" -m dreamtray run'
    )

    registry = FakeRegistry()
    monkeypatch.setitem(sys.modules, "winreg", registry)
    run = autostart.WindowsAutostart()
    assert run.is_enabled() is False and run.disable() is False
    run.enable(command)
    assert registry.keys[("HKCU", autostart.RUN_KEY)] == {"dreamtray": (1, autostart.run_value(command))}
    assert run.is_enabled() is True
    assert run.disable() is True and run.is_enabled() is False
    assert run.where == r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run\dreamtray"
