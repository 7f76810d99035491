"""The daemon's control socket: ``esl-guard status`` asks the running daemon for the state of
this instant instead of reading its last stored report.

A Unix stream socket in the state directory (beside the journal: ``esl-guard.sock``), mode
0660, so the service's user and group may ask (``chgrp`` the directory to let operators in).
One request per connection: a JSON object on one line (``{"get": "status"}`` or ``{"get":
"account", "account": "acme"}``), answered by one JSON object on one line, then closed.  The
socket only answers questions: nothing sent to it changes the daemon's state.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOCKET_NAME = "esl-guard.sock"
MODE = 0o660
MAX_REQUEST = 4096
TIMEOUT = 2.0


class ControlError(Exception):
    """The daemon could not be asked (not running, no permission, no answer)."""


def socket_path(journal: str) -> Path:
    """The control socket of the daemon whose journal is ``journal`` (its state directory)."""
    return Path(journal).parent / SOCKET_NAME


class ControlServer:
    """Serves ``handler(request) -> answer`` on the socket, in greenlets of the daemon's hub."""

    def __init__(self, path: Path, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.path = path
        self.handler = handler
        self._server: Any = None

    def start(self) -> None:
        from gevent import socket as gsocket
        from gevent.server import StreamServer

        self._remove_stale()
        listener = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
        old = os.umask(0o117)  # never world-accessible, not even between bind and chmod
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, MODE)
        listener.listen(16)
        self._server = StreamServer(listener, self._serve)
        self._server.start()
        log.info("control socket %s (esl-guard status asks the daemon here)", self.path)

    def _remove_stale(self) -> None:
        """A socket file left by a daemon that did not stop cleanly goes; anything else at
        that path is an error (never delete an operator's file)."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(f"{self.path} exists and is not a socket")
        if _answers(self.path):
            raise OSError(f"{self.path}: another esl-guard daemon answers there")
        self.path.unlink()

    def _serve(self, conn: Any, _address: Any) -> None:
        try:
            conn.settimeout(TIMEOUT)
            request = json.loads(_read_line(conn))
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            answer = self.handler(request)
        except (ValueError, OSError) as exc:
            answer = {"error": f"bad request: {exc}"}
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop the daemon
            log.exception("control request failed")
            answer = {"error": f"internal error: {exc.__class__.__name__}"}
        try:
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self._server = None
        try:
            self.path.unlink()
        except OSError:
            pass


def _read_line(conn: Any) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(MAX_REQUEST)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data.split(b"\n", 1)[0]


def _answers(path: Path) -> bool:
    """Whether a daemon answers at ``path`` (asked without blocking the daemon's hub)."""
    from gevent import socket as gsocket

    try:
        ask(path, {"get": "ping"}, timeout=0.5, sockets=gsocket)
    except ControlError:
        return False
    return True


def ask(path: Path, request: dict[str, Any], timeout: float = TIMEOUT,
        sockets: Any = socket) -> dict[str, Any]:
    """Ask the daemon; raises :class:`ControlError` saying why it could not be asked.
    ``sockets``: the socket module (gevent's inside a hub)."""
    sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        answer = json.loads(_read_line(sock))
    except FileNotFoundError:
        raise ControlError(f"no control socket {path} (daemon not running?)") from None
    except ConnectionRefusedError:
        raise ControlError(f"nothing answers on {path} (daemon not running?)") from None
    except PermissionError:
        raise ControlError(f"no permission to use {path} (run as the service's user or "
                           "group)") from None
    except (OSError, ValueError) as exc:
        raise ControlError(f"no answer on {path}: {exc}") from None
    finally:
        sock.close()
    if not isinstance(answer, dict):
        raise ControlError(f"unexpected answer on {path}")
    if "error" in answer:
        raise ControlError(f"the daemon answered: {answer['error']}")
    return answer
