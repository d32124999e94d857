"""Names and ids that come from a model hub, checked before any of them becomes part of a path.

A hub (or a mirror named by `HF_ENDPOINT`) declares file names, a commit id and hashes; the cache is built
from them: `snapshots/<commit>/<file name>` and `blobs/<hash>`. Each is checked here the way huggingface_hub
keeps its cache inside its folder: a file name is a plain relative path of `/`-separated parts (none empty,
`.` or `..`; no backslash, drive, NUL or other control or format character), a commit is 40 hex digits, a
hash 40 (git) or 64 (sha256). A name that fails is refused with a message naming the repo, never repaired.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

COMMIT = re.compile(r"[0-9a-f]{40}")
GIT_HASH = COMMIT
SHA256 = re.compile(r"[0-9a-f]{64}")
LONGEST_NAME = 1024
"""Characters in a file name (the hub's own limit on a path in a repo is lower)."""


class UnsafeName(ValueError):
    """A name from the hub that would leave its folder or cannot be a file name; the message says which."""


def shown(name: object) -> str:
    """A name from the network as a message may show it: escaped, and cut to a readable length."""
    text = ascii(name)
    return text if len(text) <= 120 else text[:117] + "..."


def file_name(name: object, repo_id: str) -> str:
    """`name` if it is a plain relative path inside the repo's folder; else UnsafeName naming the repo."""
    if not isinstance(name, str) or not name or len(name) > LONGEST_NAME:
        raise _unsafe(repo_id, "a file name", name, "it is empty, too long or not text")
    if _controls(name):
        raise _unsafe(repo_id, "a file name", name, "it holds a control character")
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise _unsafe(repo_id, "a file name", name, "it is an absolute path or uses backslashes")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise _unsafe(repo_id, "a file name", name, "it steps out of its folder (an empty, '.' or '..' part)")
    return name


def commit(value: object, repo_id: str) -> str:
    """A commit id as the hub writes one (40 lowercase hex digits)."""
    if not isinstance(value, str) or not COMMIT.fullmatch(value):
        raise _unsafe(repo_id, "a commit id", value, "a commit id is 40 hex digits")
    return value


def content_hash(value: object, repo_id: str, *, sha256: bool) -> str:
    """An LFS sha256 (64 hex digits) or a git blob id (40), the name of a blob in the cache."""
    pattern, what = (SHA256, "an LFS sha256") if sha256 else (GIT_HASH, "a git blob id")
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _unsafe(repo_id, what, value, f"it is not {64 if sha256 else 40} lowercase hex digits")
    return value


def revision(value: str) -> str:
    """A branch or tag name used as a file name under `refs/` (as huggingface_hub writes it)."""
    parts = value.split("/")
    if _controls(value) or "\\" in value or any(p in ("", ".", "..") for p in parts) or value != value.strip():
        raise UnsafeName(f"{shown(value)} is not a revision name dreamtray can use (a branch, tag or commit id).")
    return value


def _controls(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in text)


def no_file_is_a_folder(names: Iterable[str], repo_id: str) -> None:
    """Refuse a listing where a file's name is also a folder of another (`a` and `a/b`), or a name repeats."""
    names = list(names)
    folders = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    if clash := next((n for n in names if n in folders), None) or _repeated(names):
        raise _unsafe(repo_id, "a file name", clash, "it names both a file and a folder, or repeats")


def _repeated(names: list[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def wanted(name: str, patterns: Iterable[str]) -> bool:
    """Whether a file name matches a pattern: one without `/` matches the last part at any depth; one with `/`
    matches part by part, so that `*` never crosses a `/` (`tokenizer*/*` takes `tokenizer/vocab.json`, never
    `tokenizer/x/y`)."""
    parts = name.split("/")
    for pattern in patterns:
        wanted_parts = pattern.split("/")
        if len(wanted_parts) == 1 and fnmatchcase(parts[-1], pattern):
            return True
        if len(wanted_parts) == len(parts) and all(map(fnmatchcase, parts, wanted_parts)):
            return True
    return False


def inside(path: Path, root: Path, repo_id: str) -> Path:
    """`path` when every folder between `root` and it is a real folder (no symlink there is ever followed on
    write); the cache root itself may be a link (a cache moved to another disk)."""
    relative = path.relative_to(root)  # ValueError only for a caller's mistake: names are checked before
    step = root
    for part in relative.parts[:-1]:
        step = step / part
        if step.is_symlink():
            raise UnsafeName(
                f"{step} in the download of {repo_id} is a symbolic link, so writing there could land outside the "
                "cache. Remove that link (or the model's folder in the cache) and run again."
            )
    return path


def _unsafe(repo_id: str, what: str, value: object, why: str) -> UnsafeName:
    return UnsafeName(
        f"The hub declared {what} {shown(value)} for {repo_id}, which dreamtray refuses ({why}): nothing was "
        "written for it. The hub or mirror (HF_ENDPOINT) is broken or hostile; use the official hub or another "
        "mirror."
    )
