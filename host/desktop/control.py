"""One tray host per user, and the local channel through which `dreamtray trigger` reaches it.

The host holds a file lock for its whole life; a second host finds it taken and stops. Commands travel as one
JSON line each way (JSON escapes the line breaks inside it): {"action": ..., "token": ...} in, {"ok": ...,
"message": ...} out, each at most MAX_MESSAGE bytes; a longer one, one that is not JSON or nested too deeply is
answered with an error (and a reply too long for a client is told as such, never cut).
Linux and macOS: a Unix socket that only the user may open (0600, in a 0700 folder). Windows: a loopback TCP
port, written with a random token into a file only the user can read; the host refuses a wrong token.

Under load: a deep listen backlog (many `dreamtray trigger` at once, as a held-down shortcut makes), one thread
per connection up to MAX_CONNECTIONS (more are answered "busy" at once), and a READ_TIMEOUT for a client that
connects and says nothing.
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
MAX_MESSAGE = 16 * 1024 * 1024
"""Bytes of one command or one reply at most (a full queue of long prompts stays far below)."""
BACKLOG = 512
"""Connections the system holds for the host before it accepts them."""
MAX_CONNECTIONS = 256
"""Connections handled at once (each on its own thread); more are answered "busy"."""
READ_TIMEOUT = 10.0
"""Seconds the host waits for a client to send its command, or to take the reply."""
BUSY = f"dreamtray is busy with {MAX_CONNECTIONS} commands at once; try again in a moment."


class AlreadyRunning(RuntimeError):
    """Another tray host of this user holds the lock."""


class ControlError(RuntimeError):
    """A command could not be sent, or its reply not read; the message says why."""


class NotRunning(ControlError):
    """No tray host answers."""


class BadMessage(ValueError):
    """A command or reply that is too long, not JSON, nested too deeply or not a JSON object."""


def encode(message: dict[str, Any]) -> bytes:
    """`message` as one line of JSON; BadMessage when it is longer than MAX_MESSAGE."""
    data = json.dumps(message).encode() + b"\n"
    if len(data) > MAX_MESSAGE:
        raise BadMessage(f"it is too long ({len(data) // 1024} KiB; at most {MAX_MESSAGE // 1024} KiB)")
    return data


def read_message(stream: Any) -> dict[str, Any] | None:
    """The next line's JSON object from `stream`; None at the end of the stream; BadMessage otherwise."""
    line = stream.readline(MAX_MESSAGE + 1)
    if not line:
        return None
    if not line.endswith(b"\n"):
        if len(line) > MAX_MESSAGE:
            raise BadMessage(f"it is longer than {MAX_MESSAGE // 1024} KiB")
        raise BadMessage("it ended before its end of line")
    try:
        message = json.loads(line)
    except RecursionError:
        raise BadMessage("it is nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise BadMessage(f"it is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise BadMessage("it is not a JSON object")
    return message


def control_dir_path() -> Path:
    """Where the lock and the socket live: the user's runtime folder where there is one, else the state folder."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / paths.APP if runtime and Path(runtime).is_dir() else paths.state_dir()


def control_dir() -> Path:
    """A private folder for the lock and the socket (made on first use)."""
    base = control_dir_path()
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
        self.lock: Any = None

    def acquire(self) -> None:
        """Take the lock; ControlError (naming the folder) when its folder cannot be written."""
        from filelock import FileLock, Timeout

        try:
            self.lock = FileLock(str(control_dir() / "host.lock"))
            self.lock.acquire(timeout=0)
        except Timeout:
            raise AlreadyRunning("dreamtray is already running (see its icon in the tray).") from None
        except OSError as exc:
            raise ControlError(paths.cannot_write(exc, control_dir_path())) from None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


class _RequestHandler(socketserver.StreamRequestHandler):
    server: Any
    timeout = READ_TIMEOUT

    def handle(self) -> None:
        try:
            message = read_message(self.rfile)
        except BadMessage as exc:
            reply = {"ok": False, "message": f"dreamtray could not read the command: {exc}."}
        except OSError:  # the client went away, or sent nothing for READ_TIMEOUT seconds
            return
        else:
            if message is None:
                return
            token = self.server.token
            if token is not None and not secrets.compare_digest(str(message.get("token", "")), token):
                reply = {"ok": False, "message": "The token does not match: only this user may control dreamtray."}
            else:
                message.pop("token", None)
                try:
                    reply = self.server.handler(message)
                except Exception as exc:  # the control channel must never take the host down
                    reply = {"ok": False, "message": f"dreamtray could not do that: {exc}"}
        try:
            data = encode(reply)
        except BadMessage as exc:
            data = encode({"ok": False, "message": f"dreamtray's answer could not be sent: {exc}."})
        try:
            self.wfile.write(data)
        except OSError:  # the client went away, or did not take the reply for READ_TIMEOUT seconds
            pass


class _Bounded(socketserver.ThreadingMixIn):
    """A thread per connection, MAX_CONNECTIONS at most (more are answered "busy"), and a deep backlog."""

    request_queue_size = BACKLOG
    daemon_threads = True
    block_on_close = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._busy(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _busy(self, request: Any) -> None:
        try:
            request.settimeout(1.0)
            request.sendall(encode({"ok": False, "message": BUSY}))
        except OSError:
            pass
        finally:
            self.shutdown_request(request)  # type: ignore[attr-defined]

if USE_UNIX_SOCKET:

    class _UnixServer(_Bounded, socketserver.UnixStreamServer):
        """The Unix-socket control server."""


class _TcpServer(_Bounded, socketserver.TCPServer):
    """The loopback TCP control server (Windows)."""


class ControlServer:
    """Answers `dreamtray trigger` with `handler(message) -> reply`, one thread per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen; ControlError (naming the folder) when the socket or port file cannot be made."""
        try:
            self._start()
        except OSError as exc:
            raise ControlError(paths.cannot_write(exc, control_dir_path())) from None

    def _start(self) -> None:
        if USE_UNIX_SOCKET:
            path = socket_path()
            path.unlink(missing_ok=True)  # left by a host that died: the lock says none runs now
            old_umask = os.umask(0o177)
            try:
                server: Any = _UnixServer(str(path), _RequestHandler)
            finally:
                os.umask(old_umask)
            path.chmod(0o600)
            server.token = None
        else:
            server = _TcpServer(("127.0.0.1", 0), _RequestHandler)
            server.token = secrets.token_urlsafe(32)
            info = json.dumps({"port": server.server_address[1], "token": server.token})
            target = paths.private_file(port_file())
            target.write_text(info, encoding="utf-8")
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
    """Send one command to the running host and return its reply; NotRunning when none answers, ControlError
    when the command is too long to send or the reply cannot be read."""
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
            stream.write(encode(message))
            stream.flush()
            reply = read_message(stream)
        except BadMessage as exc:
            raise ControlError(f"dreamtray's command or answer could not be used: {exc}.") from None
        except TimeoutError:
            raise NotRunning(f"dreamtray did not answer within {timeout:.0f} s.") from None
        except OSError as exc:
            raise NotRunning(f"dreamtray closed the connection ({exc.strerror or exc}).") from None
    if reply is None:
        raise NotRunning("dreamtray closed the connection without answering.")
    return reply
