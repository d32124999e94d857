"""One tray host per user, and the local channel through which `dreamtray trigger` reaches it.

The host holds a file lock for its whole life; a second host finds it taken and stops. Commands travel as one
JSON line each way: {"action": ..., "token": ...} in, {"ok": ..., "message": ...} out.
Linux and macOS: a Unix socket that only the user may open (0600, in a 0700 folder). Windows: a loopback TCP
port, written with a random token into a file only the user can read; the host refuses a wrong token.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamtray import paths

Handler = Callable[[dict[str, Any]], dict[str, Any]]
USE_UNIX_SOCKET = hasattr(socket, "AF_UNIX") and not sys.platform.startswith("win")
MAX_LINE = 64 * 1024


class AlreadyRunning(RuntimeError):
    """Another tray host of this user holds the lock."""


class NotRunning(RuntimeError):
    """No tray host answers."""


def control_dir() -> Path:
    """A private folder for the lock and the socket: the user's runtime folder where there is one."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / paths.APP if runtime and Path(runtime).is_dir() else paths.state_dir()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not sys.platform.startswith("win"):
        base.chmod(0o700)
    return base


def socket_path() -> Path:
    return control_dir() / "control.sock"


def port_file() -> Path:
    return control_dir() / "control.json"


class SingleInstance:
    """The per-user lock of the tray host; `acquire` raises AlreadyRunning when another host holds it."""

    def __init__(self) -> None:
        from filelock import FileLock

        self.lock = FileLock(str(control_dir() / "host.lock"))

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise AlreadyRunning("dreamtray is already running (see its icon in the tray).") from None

    def release(self) -> None:
        self.lock.release()


class _RequestHandler(socketserver.StreamRequestHandler):
    server: Any

    def handle(self) -> None:
        line = self.rfile.readline(MAX_LINE)
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError:
            reply = {"ok": False, "message": "dreamtray could not read the command."}
        else:
            token = self.server.token
            if token is not None and not secrets.compare_digest(str(message.get("token", "")), token):
                reply = {"ok": False, "message": "The token does not match: only this user may control dreamtray."}
            else:
                message.pop("token", None)
                try:
                    reply = self.server.handler(message)
                except Exception as exc:  # the control channel must never take the host down
                    reply = {"ok": False, "message": f"dreamtray could not do that: {exc}"}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


class ControlServer:
    """Answers `dreamtray trigger` with `handler(message) -> reply`, one thread per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if USE_UNIX_SOCKET:
            path = socket_path()
            path.unlink(missing_ok=True)  # left by a host that died: the lock says none runs now
            old_umask = os.umask(0o177)
            try:
                server: Any = socketserver.ThreadingUnixStreamServer(str(path), _RequestHandler)
            finally:
                os.umask(old_umask)
            path.chmod(0o600)
            server.token = None
        else:
            server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _RequestHandler)
            server.token = secrets.token_urlsafe(32)
            info = json.dumps({"port": server.server_address[1], "token": server.token})
            target = paths.private_file(port_file())
            target.write_text(info, encoding="utf-8")
        server.daemon_threads = True
        server.handler = self.handler
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="dreamtray-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        if USE_UNIX_SOCKET:
            socket_path().unlink(missing_ok=True)
        else:
            port_file().unlink(missing_ok=True)


def send(message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one command to the running host and return its reply; NotRunning when none answers."""
    not_running = NotRunning("dreamtray is not running: start it with `dreamtray run`.")
    try:
        if USE_UNIX_SOCKET:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(timeout)
            conn.connect(str(socket_path()))
        else:
            info = json.loads(port_file().read_text(encoding="utf-8"))
            message = {**message, "token": info["token"]}
            conn = socket.create_connection(("127.0.0.1", int(info["port"])), timeout=timeout)
    except (OSError, ValueError, KeyError):
        raise not_running from None
    with conn, conn.makefile("rwb") as stream:
        try:
            stream.write(json.dumps(message).encode() + b"\n")
            stream.flush()
            line = stream.readline(MAX_LINE)
        except TimeoutError:
            raise NotRunning(f"dreamtray did not answer within {timeout:.0f} s.") from None
        except OSError as exc:
            raise NotRunning(f"dreamtray closed the connection ({exc}).") from None
    if not line:
        raise NotRunning("dreamtray closed the connection without answering.")
    return json.loads(line)
