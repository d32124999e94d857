"""installer/install.sh and uninstall.sh, run for real into a temporary home with the torch wheel pip finds here.

The first install builds a whole environment (torch included): about 1.5 minutes on two cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dreamtray import paths
from dreamtray.desktop import autostart, icon_files, launcher

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "installer" / "install.sh"
UNINSTALL = ROOT / "installer" / "uninstall.sh"
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")


def environment(home: Path) -> dict[str, str]:
    """This process's environment, moved into `home`, without this test's own virtual environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("XDG_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "DREAMTRAY_TORCH")
    }
    path = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if not p.startswith(sys.prefix)]
    env.update(HOME=str(home), PATH=os.pathsep.join(path), PIP_CACHE_DIR=PIP_CACHE)
    return env


def run(home: Path, *command: str | Path, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in command], env=environment(home), capture_output=True, text=True, timeout=timeout, cwd=home
    )


class Home:
    """The places of one user's home that the scripts touch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / ".local" / "share" / "dreamtray"
        self.venv = self.data / "venv"
        self.python = self.venv / "bin" / "python"
        self.command = root / ".local" / "bin" / "dreamtray"
        self.menu_entry = root / ".local" / "share" / "applications" / "dreamtray.desktop"
        self.autostart_entry = root / ".config" / "autostart" / "dreamtray.desktop"
        self.icons = [
            root / ".local" / "share" / "icons" / "hicolor" / f"{s}x{s}" / "apps" / "dreamtray.png"
            for s in icon_files.APP_SIZES
        ]
        self.config = root / ".config" / "dreamtray"

    def setup(self, *args: str) -> subprocess.CompletedProcess:
        return run(self.root, self.python, "-m", "dreamtray.cli.setup", *args)


def validate(path: Path) -> tuple[int, str]:
    result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Home, subprocess.CompletedProcess]:
    home = Home(tmp_path_factory.mktemp("home"))
    result = run(home.root, "bash", INSTALL, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home, result


def test_install_builds_a_working_environment_with_the_local_torch(installed) -> None:
    home, result = installed
    assert re.search(r"^dreamtray \S+ installed, with torch 2\.13\.0\+cpu\.$", result.stdout, re.M)
    assert (
        "pick_torch: torch 2.13.0, no NVIDIA GPU with a working driver found (nvidia-smi): CPU build" in result.stdout
    )
    assert "asking the PyTorch wheel index" not in result.stdout  # pip found the pinned wheel as configured
    probe = run(
        home.root, home.python, "-c", "import dreamtray, gi, torch; print(torch.__version__); print(dreamtray.__file__)"
    )
    assert probe.returncode == 0, probe.stderr
    torch_version, package = probe.stdout.split()
    assert torch_version == "2.13.0+cpu"
    assert Path(package).is_relative_to(home.venv)  # a real install, not a link to the source tree
    assert home.command.resolve() == (home.venv / "bin" / "dreamtray").resolve()
    assert os.access(home.command, os.X_OK)
    doctor = run(home.root, home.command, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["torch"] == "2.13.0+cpu" and report["cuda_build"] is None
    assert Path(report["config_file"]).is_relative_to(home.root)
    assert "ok      clipboard tool for X11 (xclip)" in result.stdout


def test_install_puts_a_valid_launcher_and_icons_in_the_menu(installed) -> None:
    home, _ = installed
    assert validate(home.menu_entry) == (0, "")
    assert f"Exec={home.venv}/bin/dreamtray run\n" in home.menu_entry.read_text()
    for icon in home.icons:
        with Image.open(icon) as image:
            assert image.size[0] == int(icon.parent.parent.name.split("x")[0])


def test_autostart_on_and_off_in_the_installed_environment(installed) -> None:
    home, _ = installed
    assert home.setup("autostart", "on").returncode == 0
    assert validate(home.autostart_entry) == (0, "")
    assert f"Exec={home.venv}/bin/dreamtray run\n" in home.autostart_entry.read_text()
    assert home.setup("autostart", "status").stdout == f"on ({home.autostart_entry})\n"
    assert home.setup("autostart", "off").returncode == 0
    assert not home.autostart_entry.exists()
    assert home.setup("autostart", "status").stdout == "off\n"


def test_running_it_again_upgrades_in_place_and_keeps_the_users_things(installed) -> None:
    home, _ = installed
    keep = {
        home.data / "gallery" / "2026-01-01" / "moon.png": b"\x89PNG picture",
        home.data / "styles" / "mine.toml": b'name = "mine"\n',
        home.config / "config.toml": b'hotkey = "<ctrl>+<alt>+g"\n',
        home.venv / "left-by-the-first-install": b"",
    }
    for path, data in keep.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert home.setup("autostart", "on").returncode == 0

    again = run(home.root, "bash", INSTALL, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"== upgrading dreamtray's environment in place: {home.venv}" in again.stdout
    assert re.search(r"^dreamtray \S+ upgraded, with torch 2\.13\.0\+cpu\.$", again.stdout, re.M)
    assert all(path.read_bytes() == data for path, data in keep.items())
    assert home.setup("autostart", "status").stdout.startswith("on (")
    assert validate(home.menu_entry) == (0, "")


def test_uninstall_keeps_the_users_things_unless_purged(installed) -> None:
    home, _ = installed
    where = run(
        home.root,
        home.python,
        "-c",
        "from dreamtray import paths; print(paths.pictures_dir(), paths.config_dir(), paths.data_dir(), sep=chr(10))",
    ).stdout.split()
    kept = [Path(where[0]) / "kept.png", Path(where[1]) / "config.toml", Path(where[2]) / "styles" / "mine.toml"]
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(path.name)
    assert home.setup("autostart", "on").returncode == 0

    result = run(home.root, "bash", UNINSTALL, timeout=600)  # removing 1.3 GB of environment
    assert result.returncode == 0, result.stderr
    gone = [home.venv, home.command, home.menu_entry, home.autostart_entry, *home.icons]
    assert [p for p in gone if p.exists() or p.is_symlink()] == []
    assert [p.read_text() for p in kept] == [p.name for p in kept]
    assert f"kept: {home.data}" in result.stdout

    purged = run(home.root, "bash", UNINSTALL, "--purge", timeout=300)
    assert purged.returncode == 0, purged.stderr
    assert [p for p in kept if p.exists()] == []


def test_uninstall_without_a_working_environment_still_removes_launcher_and_autostart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    made = [
        *launcher.LinuxLauncher().install(["/x/dreamtray", "run"]),
        *launcher.MacLauncher().install(["/x/dreamtray"]),
    ]
    for place in (autostart.LinuxAutostart(), autostart.MacAutostart()):
        place.enable(["/x/dreamtray", "run"])
        made.append(place.where)
    assert all(p.exists() for p in made)

    result = run(tmp_path, "bash", UNINSTALL)
    assert result.returncode == 0, result.stderr
    assert "missing or broken" in result.stdout
    assert [p for p in made if p.exists()] == []


def test_purge_removes_every_folder_dreamtray_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".config").mkdir()
    (tmp_path / ".config" / "user-dirs.dirs").write_text('XDG_PICTURES_DIR="$HOME/Bilder"\n')
    folders = [paths.data_dir(), paths.config_dir(), paths.cache_dir(), paths.state_dir(), paths.pictures_dir()]
    assert paths.pictures_dir() == tmp_path / "Bilder" / "dreamtray"
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "mine").write_text("mine")
    chosen_gallery = tmp_path / "My art"
    chosen_gallery.mkdir()

    kept = run(tmp_path, "bash", UNINSTALL)
    assert kept.returncode == 0, kept.stderr
    assert all((folder / "mine").exists() for folder in folders)
    assert all(f"kept: {folder}" in kept.stdout for folder in folders)

    purged = run(tmp_path, "bash", UNINSTALL, "--purge")
    assert purged.returncode == 0, purged.stderr
    assert [folder for folder in folders if folder.exists()] == []
    assert chosen_gallery.is_dir()


def test_bad_options_are_refused_clearly(tmp_path: Path) -> None:
    result = run(tmp_path, "bash", INSTALL, "--gpu")
    assert (result.returncode, result.stderr) == (1, "install.sh: unknown option '--gpu'; see --help\n")
    result = run(tmp_path, "bash", INSTALL, "--python", str(tmp_path / "nope"))
    assert result.returncode == 1 and "is not a Python 3.10 or newer with the venv module" in result.stderr
    assert "--cpu, --cuda" in run(tmp_path, "bash", INSTALL, "--help").stdout
    result = run(tmp_path, "bash", UNINSTALL, "--all")
    assert (result.returncode, result.stderr) == (
        1,
        "uninstall.sh: unknown option '--all'; the only option is --purge\n",
    )
    assert not (tmp_path / ".local").exists()
