"""Run the real `dreamtray` command in a subprocess, in a private home, and stop its engine afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

TEST_PLUGINS = Path(__file__).parent / "plugins"
"""Third-party plugin distributions for the tests: `hello` (works), `broken` (fails at import and in hooks) and
`hostile` (misbehaves without raising: sys.exit at import, wrong registrations and returns, a slow hook)."""


def install_test_plugins(site: Path) -> Path:
    """pip-install the test plugin distributions into `site` (a folder to put on PYTHONPATH); returns it."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(TEST_PLUGINS / "hello"),
            str(TEST_PLUGINS / "broken"),
            str(TEST_PLUGINS / "hostile"),
        ],
        check=True,
    )
    return site


@dataclass
class DreamtrayHome:
    """Private XDG folders and environment for one group of CLI runs."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, plugins: str = "", model: str = "tiny", **extra: str) -> DreamtrayHome:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("XDG_", "DREAMTRAY_"))}
        for name in ("CONFIG", "DATA", "CACHE", "STATE"):
            env[f"XDG_{name}_HOME"] = str(root / name.lower())
        env.update(XDG_PICTURES_DIR=str(root / "pictures"), DREAMTRAY_PLUGINS=plugins, HF_HUB_OFFLINE="1", **extra)
        config = root / "config" / "dreamtray" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f'model = "{model}"\n')
        return cls(root, env)

    @property
    def gallery(self) -> Path:
        return self.root / "pictures" / "dreamtray"

    def run(self, *args: str, check: bool = False, timeout: float = 180) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "dreamtray", *args],
            env=self.env,
            capture_output=True,
            encoding="utf-8",  # what dreamtray writes (its progress bars too), whatever locale this process has now
            timeout=timeout,
        )
        if check and result.returncode:
            raise AssertionError(f"dreamtray {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def stop_engine(self) -> None:
        self.run("engine", "stop")
