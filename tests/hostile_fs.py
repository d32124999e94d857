"""Real hostile file systems for a command: a read-only or a full tmpfs mounted over a folder.

The command runs in its own user and mount namespace (`unshare -rm`), so no privileges are needed and the
mount vanishes with it. Fails (never skips) where the kernel refuses such namespaces.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

FILLER = "head -c 8M /dev/zero > {folder}/filler 2>/dev/null; "
MOUNTS = {
    "readonly": "mount -t tmpfs -o ro,size=1M tmpfs {folder} && ",
    "full": "mount -t tmpfs -o size=256k tmpfs {folder} && " + FILLER,
}


def run_on_hostile_folder(kind: str, folder: Path, command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run `command` with a `kind` ("readonly" or "full") file system mounted on `folder` (created first)."""
    folder.mkdir(parents=True, exist_ok=True)
    setup = MOUNTS[kind].format(folder=shlex.quote(str(folder)))
    script = setup + 'exec "$@"'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *command], **kwargs)
