"""Show a folder in the platform's file manager."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path


def open_folder(folder: Path) -> None:
    """Show `folder` in the platform's file manager (argument lists, never a shell)."""
    folder.mkdir(parents=True, exist_ok=True)
    if sys.platform.startswith("win"):
        os.startfile(folder)  # type: ignore[attr-defined]
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    try:
        process = subprocess.Popen(
            [opener, str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise RuntimeError(f"{opener} is not installed; the gallery is at {folder}") from None
    threading.Thread(target=process.wait, daemon=True).start()  # reap it
