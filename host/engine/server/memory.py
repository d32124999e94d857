"""The memory the engine really has, what its one-off steps take at their peak, and the walls it ran into.

A process in a container, a systemd slice or a Flatpak sandbox still sees the machine's whole RAM in
/proc/meminfo; its real ceiling is the memory limit of its cgroup (v1 `memory.limit_in_bytes`, v2 `memory.max`),
found through /proc/self/cgroup and the mount table, the tightest of the group and its parents. `budget()`
reads both. `DREAMTRAY_MEMORY_LIMIT` (bytes, or with K/M/G) sets a lower ceiling by hand.

Before converting a model to OpenVINO or quantizing it, the worker compares the step's estimated peak
(`step_peak`) with the room it has and skips a step that would not fit (`fast.py`). When the kernel kills a
worker for memory anyway, the service reports it as out of memory (`oom_kills`, jobs.py) and records the step
(`record_wall`): the same step of the same model is not tried again with no more room than it had then.

Light to import (no torch): the service reads the OOM counters too.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

LIMIT_VARIABLE = "DREAMTRAY_MEMORY_LIMIT"
UNLIMITED = 2**60
"""Above this a cgroup limit means none (v1 writes 2**63 rounded down to a page)."""
WORKER_BASE = 1 << 30
"""A worker with torch, diffusers and OpenVINO imported, before any model: about 1 GiB."""
STEP_FACTORS = {"convert": 3.5, "int8": 6.0, "compress": 2.5}
"""A step's peak memory (the whole worker) per byte of the model's UNet in fp32, beyond WORKER_BASE. Measured
on SD-Turbo's shape (UNet 3.46 GB in fp32, docs/fast-path.md): converting about 12 GiB, the hybrid int8
calibration and quantization about 20 GiB; data-free int8 weights (`compress`) bench/first_run.py."""
MARGIN = 0.15
"""A step starts only when its estimate fits the room with this share to spare."""
STEP_LABELS = {
    "convert": "converting the model to OpenVINO",
    "int8": "quantizing the model to int8",
    "compress": "compressing the model's weights to int8",
}


@dataclass(frozen=True)
class Budget:
    """What the engine's process may hold in all, in bytes, and where the ceiling comes from."""

    total: int
    """The machine's RAM."""
    available: int
    """What the kernel could hand out now without swapping (MemAvailable)."""
    limit: int | None = None
    """The tightest memory limit of the cgroups the process is in (or the one set by hand)."""
    used: int = 0
    """What the limited group holds now."""
    where: str = ""
    """Where the limit comes from, for messages: `cgroup /system.slice/x (v2)` or the variable's name."""

    @property
    def ceiling(self) -> int:
        """The most the process may hold in all: the RAM, or the limit where that is lower."""
        return min(self.total, self.limit or self.total)

    def room(self, own: int) -> int:
        """The most a process that holds `own` bytes now can grow to, in all."""
        room = self.available + own
        if self.limit is not None:
            room = min(room, self.limit - self.used + own)
        return max(room, 0)

    def describe(self, own: int) -> str:
        text = f"{gib(self.room(own))} of {gib(self.total)} of RAM"
        if self.limit is not None:
            text += f", under a limit of {gib(self.limit)} ({self.where})"
        return text


def gib(size: float) -> str:
    return f"{size / 2**30:.1f} GB"


def parse_bytes(text: str) -> int:
    """`4G`, `512M`, `1073741824` as bytes; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE | re.ASCII)
    if not match:
        raise ValueError(f"{LIMIT_VARIABLE}={text!r} is no size (write bytes, or a number with K, M or G)")
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * 1024**power)


def _meminfo() -> dict[str, int]:
    values = {}
    with open("/proc/meminfo", encoding="ascii") as lines:
        for line in lines:
            name, _, rest = line.partition(":")
            values[name] = int(rest.split()[0]) * 1024
    return values


def _mounts() -> list[tuple[str, str, str, str]]:
    """cgroup mounts as (version, controllers or '', mount root, mount point)."""
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as lines:
            for line in lines:
                before, _, after = line.partition(" - ")
                fields, (fstype, _source, options) = before.split(), after.split()[:3]
                root, point = fields[3], fields[4].replace("\\040", " ")
                if fstype == "cgroup2":
                    found.append(("v2", "", root, point))
                elif fstype == "cgroup" and "memory" in options.split(","):
                    found.append(("v1", "memory", root, point))
    except OSError:
        pass
    return found


def cgroup_folders(pid: int | str = "self") -> list[tuple[str, Path]]:
    """The memory cgroup folders of process `pid`, (version, folder), innermost first, up to each mount."""
    try:
        membership = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    folders = []
    for version, _, root, point in _mounts():
        for line in membership:
            _, controllers, path = line.split(":", 2)
            if (version == "v2" and controllers == "") or (version == "v1" and "memory" in controllers.split(",")):
                relative = path[len(root) :] if root != "/" and path.startswith(root) else path
                folder = Path(point) / relative.lstrip("/")
                while True:
                    folders.append((version, folder))
                    if folder == Path(point) or folder.parent == folder:
                        break
                    folder = folder.parent
    return folders


def _read_number(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return None if text in ("", "max") else int(text)


def cgroup_limit(pid: int | str = "self") -> tuple[int, int, str] | None:
    """(limit, usage, description) of the tightest memory limit among `pid`'s cgroups and their parents."""
    tightest = None
    for version, folder in cgroup_folders(pid):
        v1 = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        names = v1 if version == "v1" else ("memory.max", "memory.current")
        limit = _read_number(folder / names[0])
        if limit is None or limit >= UNLIMITED:
            continue
        if tightest is None or limit < tightest[0]:
            usage = _read_number(folder / names[1]) or 0
            mount = next(point for v, _, _, point in _mounts() if v == version)
            name = "/" + str(folder.relative_to(mount)).lstrip(".")
            tightest = (limit, usage, f"cgroup {name} ({version})")
    return tightest


def own_usage() -> int:
    """This process's resident memory."""
    import psutil

    return psutil.Process().memory_info().rss


def budget() -> Budget:
    """The machine's RAM and the limit this process runs under (its cgroups', or the one set by hand)."""
    info = _meminfo()
    total, available = info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
    limit, used, where = None, 0, ""
    found = cgroup_limit()
    if found and found[0] < total:
        limit, used, where = found
    chosen = os.environ.get(LIMIT_VARIABLE, "").strip()
    if chosen:
        size = parse_bytes(chosen)
        if limit is None or size < limit - used + own_usage():
            limit, used, where = size, own_usage(), LIMIT_VARIABLE
    return Budget(total, available, limit, used, where)


def step_peak(step: str, unet_bytes: int) -> int:
    """The estimated peak of the whole worker while it runs `step` on a model whose UNet has `unet_bytes` in fp32."""
    return WORKER_BASE + int(STEP_FACTORS[step] * unet_bytes)


def fits(need: int, room: int) -> bool:
    return need * (1 + MARGIN) <= room


def oom_kills(folders: list[tuple[str, Path]]) -> int:
    """Processes the kernel has killed for memory: in the cgroup `folders` (`cgroup_folders` of a worker, read
    while it runs: v1 `memory.oom_control`, v2 `memory.events`) and on the whole machine (/proc/vmstat), summed:
    the service compares it before and after a worker's death."""
    count = 0
    for version, folder in folders:
        path = folder / ("memory.oom_control" if version == "v1" else "memory.events")
        try:
            match = re.search(r"^oom_kill (\d+)", path.read_text(encoding="ascii"), re.MULTILINE)
        except OSError:
            continue
        count += int(match.group(1)) if match else 0
    try:
        match = re.search(r"^oom_kill (\d+)", Path("/proc/vmstat").read_text(encoding="ascii"), re.MULTILINE)
        count += int(match.group(1)) if match else 0
    except OSError:
        pass
    return count


WALLS_FILE = "memory-walls.json"


def _walls(cache_dir: Path) -> dict:
    try:
        return json.loads((cache_dir / WALLS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def record_wall(cache_dir: Path, model: str, step: str, room: int) -> None:
    """Note that `step` of `model` ran out of memory with `room` bytes to grow in."""
    from dreamtray.atomic import write_atomically

    walls = _walls(cache_dir)
    walls.setdefault(model, {})[step] = {"room": room, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(cache_dir / WALLS_FILE, json.dumps(walls, indent=2))


RETRY_ROOM = 1.25
"""A step that ran out of memory is tried again only with this many times the room it had then."""


def wall(cache_dir: Path, model: str, step: str, room: int) -> int | None:
    """The room `step` of `model` ran out of memory with before, unless there is clearly more now; else None."""
    seen = _walls(cache_dir).get(model, {}).get(step)
    if not isinstance(seen, dict) or not isinstance(seen.get("room"), int):
        return None
    return seen["room"] if room < seen["room"] * RETRY_ROOM else None
