"""A Hugging Face Hub on 127.0.0.1 for tests: the model-info API and file downloads of local folders.

It speaks the parts of the hub's HTTP API that downloads use:
- `GET /api/models/{repo}[/revision/{rev}]?blobs=true`: commit sha and siblings with size, git blob id and,
  for LFS files (`*.safetensors`), the LFS size and sha256; `GET /api/models/{repo}/tree/{rev}`: the
  recursive listing that `snapshot_download` reads;
- `HEAD|GET /{repo}/resolve/{rev}/{file}`: `X-Repo-Commit` and `ETag` (the git blob id, or for LFS files the
  sha256 together with `X-Linked-Etag`/`X-Linked-Size`); LFS files redirect to `/lfs/{sha256}` the way the
  hub redirects to its CDN; the bytes are served with `Range` support (206 and `Content-Range`).

Faults on order: `cut_at(file, offset)` makes the next answer with that file's bytes send the headers of the
whole answer and close the connection after `offset` bytes of the file; from then on, `silent_for(seconds)`
sends headers and then nothing for that long, `crawl_at(bytes_per_second)` sends the bytes that slowly, and
`damage(file)` flips the last byte of that file whenever it is served.

Evil modes, a hostile or broken mirror: `declare(repo, sibling, data)` lists a sibling exactly as given (any
`rfilename`, `blobId`, `lfs.sha256`) and serves `data` for any file request that matches no route (whatever
path the client made of the name); `claim_commit(sha)` answers any commit id; `bloat_info(bytes)` pads the
model-info answer to that size, `trickle_info(bytes_per_second)` sends it that slowly; `redirect(mode)` makes
every file request a redirect: "loop" (to itself, forever), "bloated" (a 302 whose body never ends) or "file"
(to a file:// address).
Every request is logged with its method, path, Range header, status and body bytes sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024
LONGEST_SILENCE = 60.0
"""No fault keeps a connection silent longer than this, whatever a test asks."""


@dataclass(frozen=True)
class HubFile:
    path: str
    data: bytes
    lfs: bool

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @cached_property
    def blob_id(self) -> str:
        stored = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id

    def sibling(self) -> dict:
        entry = {"rfilename": self.path, "size": len(self.data), "blobId": self.blob_id}
        if self.lfs:
            entry["lfs"] = {"size": len(self.data), "sha256": self.sha256, "pointerSize": len(self.pointer)}
        return entry


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]

    @property
    def commit(self) -> str:
        listing = "".join(f"{path} {f.blob_id}\n" for path, f in sorted(self.files.items()))
        return hashlib.sha1(listing.encode()).hexdigest()

    def tree(self) -> list[dict]:
        """The recursive listing of `/api/models/{repo}/tree/{rev}`: folders, then files with their oids."""
        folders = sorted({"/".join(p.split("/")[:i]) for p in self.files for i in range(1, p.count("/") + 1)})
        entries = [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d} for d in folders
        ]
        for path, file in sorted(self.files.items()):
            entry = {"type": "file", "oid": file.blob_id, "size": len(file.data), "path": path}
            if file.lfs:
                entry["lfs"] = {"oid": file.sha256, "size": len(file.data), "pointerSize": len(file.pointer)}
            entries.append(entry)
        return entries

    def info(self, faults: Faults | None = None) -> dict:
        faults = faults or Faults()
        return {
            "_id": self.commit[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0],
            "sha": self.commit if faults.commit is None else faults.commit,
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "library_name": "diffusers",
            "tags": ["diffusers", "safetensors"],
            "lastModified": "2026-01-01T00:00:00.000Z",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "siblings": [f.sibling() for _, f in sorted(self.files.items())] + faults.declared.get(self.repo_id, []),
            **({"padding": "x" * faults.info_bloat} if faults.info_bloat else {}),
        }


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    status: int = 0
    sent: int = 0
    file: str | None = None
    """The repo file whose bytes this answer carried (200 or 206)."""


@dataclass
class Faults:
    cuts: dict[str, int] = field(default_factory=dict)
    silence: float = 0.0
    crawl: int = 0
    damaged: set[str] = field(default_factory=set)
    declared: dict[str, list[dict]] = field(default_factory=dict)
    fallback: bytes | None = None
    commit: str | None = None
    info_bloat: int = 0
    info_trickle: int = 0
    redirect: str | None = None


class HubServer:
    """A threaded HTTP server on 127.0.0.1 that serves folders as hub model repos."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.log: list[Logged] = []
        self.faults = Faults()
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), _handler(self)) for _ in ("hub", "cdn")]
        self.threads = []
        for server in self.servers:
            server.daemon_threads = True
            kwargs = {"poll_interval": 0.1}
            self.threads.append(threading.Thread(target=server.serve_forever, kwargs=kwargs, daemon=True))

    @property
    def url(self) -> str:
        """The hub's address, for HF_ENDPOINT."""
        return _address(self.servers[0])

    @property
    def cdn_url(self) -> str:
        """Where LFS files are redirected to: another origin, as the hub's CDN is."""
        return _address(self.servers[1])

    def __enter__(self) -> HubServer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        for server, thread in zip(self.servers, self.threads):
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

    def add_folder(self, repo_id: str, folder: Path, lfs: str = ".safetensors") -> HubRepo:
        """Serve every file under `folder` as the repo `repo_id`; files ending in `lfs` are LFS files."""
        files = {
            p.relative_to(folder).as_posix(): HubFile(
                p.relative_to(folder).as_posix(), p.read_bytes(), p.name.endswith(lfs)
            )
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        self.repos[repo_id] = repo = HubRepo(repo_id, files)
        return repo

    def cut_at(self, path: str, offset: int) -> None:
        with self.lock:
            self.faults.cuts[path] = offset

    def silent_for(self, seconds: float) -> None:
        self.faults.silence = min(seconds, LONGEST_SILENCE)

    def crawl_at(self, bytes_per_second: int) -> None:
        self.faults.crawl = bytes_per_second

    def damage(self, path: str) -> None:
        self.faults.damaged.add(path)

    def declare(self, repo_id: str, sibling: dict, data: bytes = b"{}") -> None:
        self.faults.declared.setdefault(repo_id, []).append(sibling)
        self.faults.fallback = data

    def claim_commit(self, sha: str) -> None:
        self.faults.commit = sha

    def bloat_info(self, size: int) -> None:
        self.faults.info_bloat = size

    def trickle_info(self, bytes_per_second: int) -> None:
        self.faults.info_trickle = bytes_per_second

    def redirect(self, mode: str) -> None:
        assert mode in ("loop", "bloated", "file")
        self.faults.redirect = mode

    def downloads(self, path: str | None = None) -> list[Logged]:
        """GET requests that served file bytes (of the file `path` if given), in order."""
        return [
            entry
            for entry in list(self.log)
            if entry.method == "GET" and entry.file is not None and (path is None or entry.file == path)
        ]

    def api_calls(self) -> list[Logged]:
        return [entry for entry in list(self.log) if entry.path.startswith("/api/")]


def _address(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # quiet: the log list is the record
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            entry = Logged(self.command, urlsplit(self.path).path, self.headers.get("Range"))
            hub.log.append(entry)
            path = entry.path
            if match := re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path):
                self._info(entry, match.group(1), unquote(match.group(2) or "main"), body, tree=False)
            elif match := re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)/?$", path):
                self._info(entry, match.group(1), unquote(match.group(2)), body, tree=True)
            elif hub.faults.redirect and "/resolve/" in path:
                self._redirect(entry)
            elif match := re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path):
                self._resolve(entry, match.group(1), unquote(match.group(2)), unquote(match.group(3)), body)
            elif match := re.match(r"^/lfs/([^/]+/[^/]+)/([0-9a-f]{64})$", path):
                repo = hub.repos.get(match.group(1))
                file = next(
                    (f for f in (repo.files.values() if repo else ()) if f.lfs and f.sha256 == match.group(2)), None
                )
                self._bytes(entry, file, {}, body) if file else self._error(entry, 404, "Entry not found")
            elif hub.faults.fallback is not None and not path.startswith("/api/"):
                self._bytes(entry, HubFile(path, hub.faults.fallback, False), {}, body)
            else:
                self._error(entry, 404, "Not found")

        def _redirect(self, entry: Logged) -> None:
            mode = hub.faults.redirect
            target = {"loop": f"{hub.url}{self.path}", "bloated": f"{hub.url}{self.path}", "file": "file:///etc/passwd"}
            headers = {"Location": target[mode]}
            if mode != "bloated":
                self._send(entry, 302, {**headers, "Content-Length": "0"})
                return
            self._send(entry, 302, {**headers, "Content-Length": str(1 << 40)})
            while not hub.closing.is_set():  # a body that never ends
                try:
                    self._write(entry, b"x" * CHUNK)
                except OSError:
                    return

        def _repo(self, entry: Logged, repo_id: str, revision: str) -> HubRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(entry, 404, "Repository not found", {"X-Error-Code": "RepoNotFound"})
            elif revision not in ("main", repo.commit):
                self._error(entry, 404, f"Invalid rev id: {revision}", {"X-Error-Code": "RevisionNotFound"})
                return None
            return repo

        def _info(self, entry: Logged, repo_id: str, revision: str, body: bool, tree: bool) -> None:
            if (repo := self._repo(entry, repo_id, revision)) is None:
                return
            data = json.dumps(repo.tree() if tree else repo.info(hub.faults)).encode()
            self._send(entry, 200, {"Content-Type": "application/json", "Content-Length": str(len(data))})
            if not body:
                return
            if not hub.faults.info_trickle:
                with contextlib.suppress(OSError):  # a client that stops reading a bloated answer
                    self._write(entry, data)
                return
            step = max(1, hub.faults.info_trickle // 10)
            for offset in range(0, len(data), step):
                if hub.closing.wait(0.1):
                    return
                try:
                    self._write(entry, data[offset : offset + step])
                except OSError:
                    return

        def _resolve(self, entry: Logged, repo_id: str, revision: str, name: str, body: bool) -> None:
            if (repo := self._repo(entry, repo_id, revision)) is None:
                return
            file = repo.files.get(name)
            if file is None and hub.faults.fallback is not None:
                file = HubFile(name, hub.faults.fallback, False)
            if file is None:
                self._error(entry, 404, "Entry not found", {"X-Error-Code": "EntryNotFound"})
                return
            headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{file.etag}"'}
            if file.lfs:
                headers.update({"X-Linked-Etag": f'"{file.sha256}"', "X-Linked-Size": str(len(file.data))})
                headers.update({"Location": f"{hub.cdn_url}/lfs/{repo_id}/{file.sha256}", "Content-Length": "0"})
                self._send(entry, 302, headers)
                return
            self._bytes(entry, file, headers, body)

        def _bytes(self, entry: Logged, file: HubFile, headers: dict[str, str], body: bool) -> None:
            data = file.data
            if file.path in hub.faults.damaged:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            start, status = 0, 200
            if entry.range:
                match = re.match(r"^bytes=(\d+)-(\d*)$", entry.range)
                start = int(match.group(1)) if match else len(data)
                if start >= len(data):
                    self._error(entry, 416, "Range not satisfiable", {"Content-Range": f"bytes */{len(data)}"})
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            headers.update({"Content-Length": str(len(data) - start), "Accept-Ranges": "bytes"})
            headers.setdefault("ETag", f'"{file.etag}"')
            headers["Content-Type"] = "application/octet-stream"
            self._send(entry, status, headers)
            entry.file = file.path
            if not body:
                return
            if hub.faults.silence and hub.closing.wait(hub.faults.silence):
                return
            with hub.lock:
                cut = hub.faults.cuts.pop(file.path, None)
            end = len(data) if cut is None else max(cut, start)
            step = max(1, hub.faults.crawl // 10) if hub.faults.crawl else CHUNK
            for offset in range(start, end, step):
                if hub.faults.crawl and hub.closing.wait(0.1):
                    return
                self._write(entry, data[offset : min(offset + step, end)])
            if cut is not None:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

        def _error(self, entry: Logged, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            data = json.dumps({"error": message}).encode()
            self._send(
                entry, status, {**(headers or {}), "Content-Type": "application/json", "Content-Length": str(len(data))}
            )
            if self.command != "HEAD":
                self._write(entry, data)

        def _send(self, entry: Logged, status: int, headers: dict[str, str]) -> None:
            entry.status = status
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()

        def _write(self, entry: Logged, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()
            entry.sent += len(data)

    return Handler


class LoopbackProxy:
    """A forward HTTP proxy on 127.0.0.1 that only forwards to 127.0.0.1, logging every URL it is asked for."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return _address(self.server)

    def __enter__(self) -> LoopbackProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _proxy_handler(proxy: LoopbackProxy) -> type[BaseHTTPRequestHandler]:
    import http.client

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):
            pass

        def do_HEAD(self) -> None:
            self._forward()

        def do_GET(self) -> None:
            self._forward()

        def _forward(self) -> None:
            proxy.urls.append(self.path)
            target = urlsplit(self.path)
            if target.hostname != "127.0.0.1":  # never a byte off this machine
                self.send_error(403, "this test proxy only reaches 127.0.0.1")
                return
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=LONGEST_SILENCE)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path, headers=headers)
            answer = upstream.getresponse()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                    self.send_header(key, value)
            self.end_headers()
            while self.command != "HEAD" and (block := answer.read(CHUNK)):
                self.wfile.write(block)
            upstream.close()

    return Handler
