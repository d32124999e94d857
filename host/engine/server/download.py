"""Fetching a model from the Hugging Face hub into its standard cache, in a way a first run can explain.

Before a byte moves the hub is asked what the model holds (file names, sizes, git and LFS hashes); the size
and the destination are announced and the free space is checked. Each file then streams, under
huggingface_hub's lock for it, into `blobs/<etag>.incomplete` (huggingface_hub's name too, so either can
resume the other's work), with
byte progress and speed as events, a cancel check on every chunk, resumption with a Range request after a
dropped connection, and a bound on how long a silent or crawling server is waited for. A file becomes part
of the cache only once its size and hash equal what the hub declared; a damaged one is deleted.

Requests go through httpx, which honours the system's proxy settings (HTTP(S)_PROXY, NO_PROXY, and on
Windows and macOS the system configuration, via `urllib.request.getproxies`). The endpoint, cache folder,
offline switch and timeout are huggingface_hub's own (`HF_ENDPOINT`, `HF_HUB_CACHE`/`HF_HOME`,
`HF_HUB_OFFLINE`, `HF_HUB_DOWNLOAD_TIMEOUT`), read when it is first imported.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from dreamtray.atomic import write_atomically
from dreamtray.engine.downloads import human
from dreamtray.engine.server import hub_names
from dreamtray.engine.server.hub_http import ANSWER_SECONDS, DownloadError, read_json, send

Emit = Callable[[dict[str, Any]], None]

TRIES = 4
"""Attempts per file in a row that bring (almost) nothing; one that brings MIN_BYTES_PER_WINDOW or more
starts the count again, so a download ends after at most size / MIN_BYTES_PER_WINDOW + TRIES attempts."""
PAUSE = 1.0
"""Seconds between two attempts at a file, as huggingface_hub waits."""
MIN_BYTES_PER_WINDOW = 64 * 1024
"""A server that sends less than this within one timeout window is treated like a silent one."""
EVENT_INTERVAL = 0.25
"""Seconds between two progress events (the last one of each file is always sent)."""
LOCK_WAIT = 600.0
"""Seconds to wait for another program that is downloading the same file into the same cache."""
SPEED_WINDOW = 3.0
"""Seconds of recent transfer that the reported speed averages over."""


class DownloadCancelled(Exception):
    """The job was cancelled during the download; the bytes fetched so far stay for the next try."""


class _Retry(Exception):
    """One attempt at a file ended early (dropped, silent, crawling or 5xx): try again from where it stopped."""


@dataclass(frozen=True)
class Hub:
    """Where models come from and go to, and how long a silent server is waited for."""

    endpoint: str
    cache: Path
    timeout: float
    offline: bool = False
    answer_seconds: float = ANSWER_SECONDS
    """The longest the hub's description of a model may take to arrive, in all."""

    @classmethod
    def from_environment(cls) -> Hub:
        """huggingface_hub's settings, so dreamtray and every other tool share one cache and one endpoint."""
        from huggingface_hub import constants

        return cls(
            endpoint=constants.ENDPOINT,
            cache=Path(constants.HF_HUB_CACHE),
            timeout=float(constants.HF_HUB_DOWNLOAD_TIMEOUT),
            offline=bool(constants.HF_HUB_OFFLINE),
        )

    def repo_folder(self, repo_id: str) -> Path:
        return self.cache / ("models--" + repo_id.replace("/", "--"))


@dataclass(frozen=True)
class HubFile:
    """One file of a model as the hub declares it."""

    path: str
    size: int
    blob_id: str
    """The git object id: sha1 of `blob <size>\\0` + content for files kept in git."""
    sha256: str | None
    """For files kept in LFS: the sha256 of the content (and their name in the cache)."""

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id

    def hasher(self):
        """A hash object primed so that its hexdigest, fed the content, equals what the hub declared."""
        if self.sha256:
            return hashlib.sha256()
        git = hashlib.sha1(usedforsecurity=False)
        git.update(f"blob {self.size}\0".encode())
        return git


@dataclass(frozen=True)
class Snapshot:
    """The files of one model revision that a pipeline needs, and where they live in the cache."""

    repo_id: str
    revision: str
    commit: str
    files: tuple[HubFile, ...]
    hub: Hub

    @property
    def folder(self) -> Path:
        return self.hub.repo_folder(self.repo_id) / "snapshots" / self.commit

    def blob(self, file: HubFile) -> Path:
        return self._inside(self.hub.repo_folder(self.repo_id) / "blobs" / file.etag)

    def partial(self, file: HubFile) -> Path:
        return self._inside(self.blob(file).with_name(file.etag + ".incomplete"))

    def entry(self, file: HubFile) -> Path:
        """The file's place in the snapshot folder (a link to its blob)."""
        return self._inside(self.folder / file.path)

    def _inside(self, path: Path) -> Path:
        try:
            return hub_names.inside(path, self.hub.cache, self.repo_id)
        except hub_names.UnsafeName as exc:
            raise DownloadError(str(exc)) from None

    def missing(self) -> list[HubFile]:
        return [f for f in self.files if not _has_size(self.folder / f.path, f.size)]

    def partial_bytes(self, file: HubFile) -> int:
        """Bytes of `file` already on disk from an earlier, interrupted try (0 when none or unusable)."""
        try:
            have = self.partial(file).stat().st_size
        except OSError:
            return 0
        return have if have <= file.size else 0


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def ensure_snapshot(
    repo_id: str,
    patterns: list[str],
    *,
    record_dir: Path,
    emit: Emit,
    cancelled: Callable[[], bool] = lambda: False,
    revision: str = "main",
    hub: Hub | None = None,
) -> Path:
    """The local folder of `repo_id` at `revision` with the files matching `patterns`, downloading what is missing.

    A complete earlier download is found through a small record in `record_dir`, without asking the hub.
    """
    hub = hub or Hub.from_environment()
    try:
        hub_names.revision(revision)
    except hub_names.UnsafeName as exc:
        raise DownloadError(str(exc)) from None
    record = _record_path(record_dir, repo_id, revision)
    if (folder := recorded_folder(record, hub, patterns)) is not None:
        return folder
    if hub.offline:
        if (other := _other_copy(repo_id, revision, patterns, hub)) is not None:
            return other
        raise DownloadError(f"{repo_id} is not downloaded yet, and HF_HUB_OFFLINE forbids fetching it.")
    with _client(hub) as client:
        try:
            snapshot = describe(client, repo_id, revision, patterns, hub)
        except DownloadError:
            if (other := _other_copy(repo_id, revision, patterns, hub)) is not None:
                return other
            raise
        download(client, snapshot, emit, cancelled)
    _write_record(record, snapshot, patterns)
    return snapshot.folder


def describe(client: httpx.Client, repo_id: str, revision: str, patterns: list[str], hub: Hub) -> Snapshot:
    """Ask the hub which commit `revision` is and which files (sizes, hashes) match `patterns`; every name and id
    in the answer is checked before it can become part of a path (hub_names)."""
    url = f"{hub.endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
    what = f"{repo_id} (its list of files)"
    try:
        headers = {"Accept-Encoding": "identity"}
        with send(client, "GET", url, hub.endpoint, params={"blobs": "true"}, headers=headers) as response:
            _raise_for_status(response, repo_id)
            info = read_json(response, what, hub.endpoint, hub.answer_seconds)
    except httpx.HTTPError as exc:
        raise DownloadError(
            f"Cannot reach the Hugging Face hub at {hub.endpoint} ({_reason(exc)}). "
            "Check the connection; behind a proxy, set HTTPS_PROXY (see docs/models.md)."
        ) from exc
    try:
        files = tuple(_declared(s, repo_id) for s in info["siblings"] if _wanted(s, patterns, repo_id))
        hub_names.no_file_is_a_folder((f.path for f in files), repo_id)
        commit = hub_names.commit(info["sha"], repo_id)
    except hub_names.UnsafeName as exc:
        raise DownloadError(str(exc)) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DownloadError(
            f"The hub at {hub.endpoint} answered about {repo_id} in a form dreamtray cannot read."
        ) from exc
    if not files:
        raise DownloadError(f"{repo_id} on the hub has no files a diffusers pipeline can load ({', '.join(patterns)}).")
    return Snapshot(repo_id, revision, commit, files, hub)


def _declared(sibling: dict, repo_id: str) -> HubFile:
    """One file of the hub's answer, its name and hashes checked."""
    lfs = sibling.get("lfs") or {}
    size = int(lfs.get("size", sibling["size"]))
    if size < 0:
        raise ValueError(f"negative size {size}")
    sha256 = lfs.get("sha256")
    return HubFile(
        path=hub_names.file_name(sibling["rfilename"], repo_id),
        size=size,
        blob_id=hub_names.content_hash(sibling["blobId"], repo_id, sha256=False),
        sha256=None if sha256 is None else hub_names.content_hash(sha256, repo_id, sha256=True),
    )


def _wanted(sibling: dict, patterns: Iterable[str], repo_id: str) -> bool:
    """Whether the pipeline needs this file; its name is checked first, so a bad one is never silently skipped."""
    return hub_names.wanted(hub_names.file_name(sibling["rfilename"], repo_id), patterns)


def _reason(exc: httpx.HTTPError) -> str:
    """An httpx error in words: its kind for the curious, and what it says when it says something."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def download(
    client: httpx.Client, snapshot: Snapshot, emit: Emit, cancelled: Callable[[], bool] = lambda: False
) -> None:
    """Fetch the snapshot's missing files: announce, check the space, stream, verify, link into the cache."""
    missing = snapshot.missing()
    if not missing:
        return
    total = sum(f.size for f in missing)
    already = sum(snapshot.partial_bytes(f) for f in missing)
    destination = snapshot.hub.repo_folder(snapshot.repo_id)
    resumed = f", {human(already)} of it already here from an earlier try" if already else ""
    emit(
        {
            "kind": "download",
            "stage": "start",
            "model": snapshot.repo_id,
            "done": already,
            "total": total,
            "files": len(missing),
            "destination": str(destination),
            "message": f"Downloading {snapshot.repo_id}: {human(total)} in {len(missing)} files{resumed}, "
            f"into {destination}",
        }
    )
    check_free_space(destination, total - already, snapshot.repo_id)
    progress = Progress(emit, snapshot.repo_id, total, already)
    for file in missing:
        with _file_lock(snapshot, file, cancelled, progress):
            if not _has_size(snapshot.entry(file), file.size):  # else another program just fetched it
                _fetch_file(client, snapshot, file, progress, cancelled)
                _link(snapshot, file)
    if snapshot.revision != snapshot.commit:
        write_atomically(snapshot._inside(destination / "refs" / snapshot.revision), snapshot.commit, mode=0o644)
    seconds = progress.elapsed()
    fetched = total - already
    emit(
        {
            "kind": "download",
            "stage": "done",
            "model": snapshot.repo_id,
            "done": total,
            "total": total,
            "seconds": round(seconds, 3),
            "speed": fetched / seconds if seconds > 0 else 0.0,
            "message": f"Downloaded {snapshot.repo_id} ({human(fetched)} in {seconds:.1f} s, all files verified)",
        }
    )


def check_free_space(destination: Path, needed: int, name: str) -> None:
    """Refuse a download that cannot fit, before any byte of it is written."""
    existing = destination
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise DownloadError(
            f"{name} needs {human(needed)} of free space in {existing}, which has {human(free)}. "
            "Free some space there, or point HF_HOME (or HF_HUB_CACHE) at a larger disk and start again."
        )


@contextlib.contextmanager
def _file_lock(snapshot: Snapshot, file: HubFile, cancelled: Callable[[], bool], progress: Progress):
    """huggingface_hub's lock for this blob, so that two programs never write one file; waited for boundedly."""
    from filelock import FileLock, Timeout

    path = snapshot.hub.cache / ".locks" / snapshot.hub.repo_folder(snapshot.repo_id).name / f"{file.etag}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            lock.acquire(timeout=0.5)
            break
        except Timeout:
            if cancelled():
                raise _cancel(progress) from None
            if time.monotonic() > deadline:
                raise DownloadError(
                    f"Another program has been downloading {file.path} into {snapshot.hub.cache} for "
                    f"{LOCK_WAIT / 60:.0f} minutes. Let it finish (or stop it), then run again."
                ) from None
    try:
        yield
    finally:
        lock.release()


def _fetch_file(
    client: httpx.Client, snapshot: Snapshot, file: HubFile, progress: Progress, cancelled: Callable[[], bool]
) -> None:
    """Stream one file into its `.incomplete` blob, resuming after failures, then verify it."""
    partial = snapshot.partial(file)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _open_for_writing(partial, append=True).close()
    url = f"{snapshot.hub.endpoint}/{snapshot.repo_id}/resolve/{snapshot.commit}/{quote(file.path)}"
    fruitless = 0
    while (before := snapshot.partial_bytes(file)) < file.size:
        try:
            _stream(client, url, file, partial, before, progress, cancelled, snapshot.hub)
            break
        except _Retry as exc:
            fruitful = snapshot.partial_bytes(file) - before >= min(MIN_BYTES_PER_WINDOW, file.size - before)
            fruitless = 0 if fruitful else fruitless + 1
            if fruitless >= TRIES:
                raise DownloadError(
                    f"The hub at {snapshot.hub.endpoint} {exc} while sending {file.path}, {TRIES} times in a row. "
                    f"The {human(progress.done)} fetched so far are kept: run again to resume, or check the "
                    "connection (and the proxy settings, see docs/models.md)."
                ) from exc
            _pause(PAUSE, cancelled, progress)
    _verify(partial, file, snapshot.hub.endpoint)
    progress.flush(file.path)


def _stream(client, url, file: HubFile, partial: Path, have: int, progress, cancelled, hub: Hub) -> None:
    timeout = hub.timeout
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        with send(client, "GET", url, hub.endpoint, headers=headers) as response:
            if response.status_code >= 500:
                raise _Retry(f"failed (HTTP {response.status_code})")
            if response.status_code == 416:  # what is on disk is no prefix the server knows: start the file again
                partial.unlink()
                progress.rewind(have)
                raise _Retry("refused to resume (HTTP 416)")
            _raise_for_status(response, file.path)
            if have and response.status_code != 206:
                progress.rewind(have)  # the server ignored the Range: start the file again
                have = 0
            with _open_for_writing(partial, append=bool(have)) as out:
                window_start, window_bytes = time.monotonic(), 0
                for chunk in response.iter_raw():
                    if cancelled():
                        raise _cancel(progress)
                    if have + len(chunk) > file.size:
                        out.close()
                        partial.unlink()
                        raise DownloadError(
                            f"The hub sent more of {file.path} than the {human(file.size)} it declared; "
                            "nothing of it was kept. Run again; if it happens again, the mirror or a proxy "
                            "is changing files."
                        )
                    _write(out, chunk, progress)
                    have += len(chunk)
                    window_bytes += len(chunk)
                    progress.add(len(chunk), file.path)
                    if time.monotonic() - window_start >= timeout:
                        if window_bytes < MIN_BYTES_PER_WINDOW:
                            raise _Retry(f"sent only {human(window_bytes)} in {timeout:g} s")
                        window_start, window_bytes = time.monotonic(), 0
    except httpx.TimeoutException as exc:
        raise _Retry(f"sent nothing for {timeout:g} s") from exc
    except httpx.TransportError as exc:
        raise _Retry(f"dropped the connection ({type(exc).__name__})") from exc
    if have < file.size:
        raise _Retry(f"ended the answer early ({human(have)} of {human(file.size)})")


def _open_for_writing(path: Path, append: bool):
    """`path` opened to write bytes, created if need be; never through a symbolic link (O_NOFOLLOW)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC) | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags | getattr(os, "O_BINARY", 0), 0o644), "ab" if append else "wb")


def _write(out, chunk: bytes, progress: Progress) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise DownloadError(
            f"The disk filled up during the download ({out.name}). The {human(progress.done)} fetched so far are "
            "kept: free some space and run again to resume, or point HF_HOME (or HF_HUB_CACHE) at a larger disk."
        ) from exc


def _verify(partial: Path, file: HubFile, endpoint: str) -> None:
    """Compare size and hash with the hub's declaration; a mismatch deletes the file."""
    digest = file.hasher()
    with open(partial, "rb") as data:
        while block := data.read(1 << 20):
            digest.update(block)
    size = partial.stat().st_size
    if size == file.size and digest.hexdigest() == file.etag:
        return
    partial.unlink(missing_ok=True)
    kind = "sha256" if file.sha256 else "git hash"
    raise DownloadError(
        f"{file.path} from {endpoint} is not the file the hub declared ({kind} {digest.hexdigest()[:12]}…, "
        f"expected {file.etag[:12]}…; {size} bytes, expected {file.size}). The damaged copy was deleted. "
        "Run again to fetch it anew; if it happens again, the mirror or a proxy is changing files."
    )


def _link(snapshot: Snapshot, file: HubFile) -> None:
    """Move the verified file to its blob and point the snapshot's entry at it, as huggingface_hub does."""
    blob, entry = snapshot.blob(file), snapshot.entry(file)
    os.replace(snapshot.partial(file), blob)
    entry.parent.mkdir(parents=True, exist_ok=True)
    snapshot.entry(file).unlink(missing_ok=True)  # checked again: the folders now exist
    try:
        entry.symlink_to(os.path.relpath(blob, entry.parent))
    except OSError:  # no symlinks here (Windows without developer mode): the file itself goes in the snapshot
        shutil.move(blob, entry)


def _pause(seconds: float, cancelled: Callable[[], bool], progress: Progress) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cancelled():
            raise _cancel(progress)
        time.sleep(0.1)


def _cancel(progress: Progress) -> DownloadCancelled:
    return DownloadCancelled(
        f"Download cancelled; the {human(progress.done)} fetched so far are kept, and the next run resumes from there."
    )


def _raise_for_status(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status in (401, 403):
        raise DownloadError(
            f"The hub refuses {what} (HTTP {status}): the model may need you to accept its licence on its page "
            "and to log in once with `hf auth login`."
        )
    if status == 404:
        raise DownloadError(f"The hub has no {what} (HTTP 404): check the model's name.")
    raise DownloadError(f"The hub answered HTTP {status} for {what}.")


def _client(hub: Hub) -> httpx.Client:
    """One connection pool for the whole download; proxies come from the system (trust_env)."""
    from huggingface_hub.utils import build_hf_headers

    return httpx.Client(
        headers=build_hf_headers(),
        timeout=httpx.Timeout(hub.timeout),
        follow_redirects=True,
        trust_env=True,
    )


class Progress:
    """Byte counts of one download, sent as events at most every EVENT_INTERVAL, with a recent speed."""

    def __init__(self, emit: Emit, model: str, total: int, done: int):
        self.emit, self.model, self.total, self.done = emit, model, total, done
        self.started = time.monotonic()
        self.samples: deque[tuple[float, int]] = deque([(self.started, done)])
        self.last_event, self.last_sent = 0.0, -1

    def add(self, count: int, file: str) -> None:
        self.done += count
        now = time.monotonic()
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[1][0] > SPEED_WINDOW:
            self.samples.popleft()
        if now - self.last_event >= EVENT_INTERVAL:
            self.flush(file)

    def rewind(self, count: int) -> None:
        """Bytes that were counted but are gone (a restarted file)."""
        self.done -= count
        self.samples = deque([(time.monotonic(), self.done)])

    def speed(self) -> float:
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def flush(self, file: str) -> None:
        if self.done == self.last_sent:
            return
        self.last_event, self.last_sent = time.monotonic(), self.done
        self.emit({"kind": "download", "stage": "progress", "model": self.model, "done": self.done,
                   "total": self.total, "speed": round(self.speed()), "file": file})  # fmt: skip

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _record_path(record_dir: Path, repo_id: str, revision: str) -> Path:
    return record_dir / "downloads" / f"{repo_id.replace('/', '--')}@{quote(revision, safe='')}.json"


def recorded_folder(record: Path, hub: Hub, patterns: list[str]) -> Path | None:
    """The snapshot folder of an earlier complete download of these files, if every one is still there."""
    try:
        data = json.loads(record.read_text())
        repo_id = data["repo_id"]
        folder = hub.repo_folder(repo_id) / "snapshots" / hub_names.commit(data["commit"], repo_id)
        files, same = data["files"], data["patterns"] == patterns
        for path in files:
            hub_names.file_name(path, repo_id)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # UnsafeName is a ValueError
        return None
    return folder if same and all(_has_size(folder / path, size) for path, size in files.items()) else None


def _write_record(record: Path, snapshot: Snapshot, patterns: list[str]) -> None:
    data = {
        "repo_id": snapshot.repo_id,
        "revision": snapshot.revision,
        "commit": snapshot.commit,
        "patterns": patterns,
        "files": {f.path: f.size for f in snapshot.files},
    }
    write_atomically(record, json.dumps(data, indent=1))


def _other_copy(repo_id: str, revision: str, patterns: list[str], hub: Hub) -> Path | None:
    """A copy that another program put in the shared cache, found without the network (or None)."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, cache_dir=hub.cache,
                                        local_files_only=True))  # fmt: skip
    except Exception:
        return None
    # A pipeline has its model_index.json, a single model (a tiny decoder) its config.json.
    return folder if any((folder / name).is_file() for name in ("model_index.json", "config.json")) else None
