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


def run_on_hostile_folder(
    kind: str, folder: Path, command: list[str], keep: tuple[Path, ...] = (), **kwargs
) -> subprocess.CompletedProcess:
    """Run `command` with a `kind` ("readonly" or "full") file system mounted on `folder` (created first);
    the files in `keep` are copied into it first, so that they are there, read-only, for the command."""
    folder.mkdir(parents=True, exist_ok=True)
    quoted = shlex.quote(str(folder))
    if keep:
        copies = " ".join(shlex.quote(str(path)) for path in keep)
        setup = f"mount -t tmpfs -o size=8M tmpfs {quoted} && cp {copies} {quoted}/ && "
        setup += f"mount -o remount,ro {quoted} && " if kind == "readonly" else FILLER.format(folder=quoted)
    else:
        setup = MOUNTS[kind].format(folder=quoted)
    script = setup + 'exec "$@"'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *command], **kwargs)
