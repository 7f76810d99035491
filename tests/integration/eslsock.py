"""A tiny blocking event-socket client for the tests' own checks (hash select, readiness).

Deliberately independent of esl_guard: it checks FreeSWITCH, not esl-guard's ESL code.  Frames
as in tests/fixtures/esl: header lines, a blank line, then Content-Length bytes of body.
"""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from tests.integration.target import Target

T = TypeVar("T")


class ESLError(Exception):
    pass


class ESLSocket:
    def __init__(self, host: str, port: int, password: str, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        try:
            headers, _ = self._frame()
            if headers.get("Content-Type") != "auth/request":
                raise ESLError(f"expected auth/request, got {headers}")
            self._send(f"auth {password}")
            headers, _ = self._frame()
            reply = headers.get("Reply-Text", "")
            if not reply.startswith("+OK"):
                raise ESLError(f"auth refused: {reply or headers}")
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> ESLSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._send("exit")
        except OSError:
            pass
        self.sock.close()

    def _send(self, command: str) -> None:
        if "\n" in command or "\r" in command:
            raise ValueError("one command per line")
        self.sock.sendall(command.encode() + b"\n\n")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ESLError("FreeSWITCH closed the event socket")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ESLError("FreeSWITCH closed the event socket")
            self.buf += chunk
        body, self.buf = self.buf[:n], self.buf[n:]
        return body

    def _frame(self) -> tuple[dict[str, str], bytes]:
        head = self._read_until(b"\n\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(": ")
            headers[key] = value
        body = b""
        if "Content-Length" in headers:
            body = self._read_exact(int(headers["Content-Length"]))
        return headers, body

    def api(self, command: str) -> str:
        """The body of `api COMMAND` (e.g. '-ERR no reply\\n' for a missing hash key)."""
        self._send(f"api {command}")
        while True:
            headers, body = self._frame()
            ctype = headers.get("Content-Type")
            if ctype == "api/response":
                return body.decode("utf-8", "replace")
            if ctype in ("text/disconnect-notice", "text/rude-rejection"):
                raise ESLError(f"{ctype}: {body.decode('utf-8', 'replace').strip()}")


def connect(target: Target, timeout: float = 5.0) -> ESLSocket:
    return ESLSocket(target.esl_host, target.esl_port, target.esl_password, timeout)


def api(target: Target, command: str) -> str:
    with connect(target) as esl:
        return esl.api(command)


def hash_select(target: Target, realm: str, key: str) -> str | None:
    """The mod_hash value, None when the key is absent (`-ERR no reply`)."""
    body = api(target, f"hash select/{realm}/{key}")
    return None if not body.strip() or body.startswith("-ERR") else body.strip()


def poll(fn: Callable[[], T | None], timeout: float, interval: float = 0.25,
         what: str = "condition") -> T:
    """Call fn until it returns something truthy; TimeoutError (with the last error) if not."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except (OSError, ESLError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:g}s (last: {last!r})")
        time.sleep(interval)


def ready(target: Target) -> str | None:
    """A one-line description when FreeSWITCH is up with both SIP profiles and mod_hash."""
    with connect(target, timeout=3.0) as esl:
        status = esl.api("status")
        if not status.startswith("UP"):
            return None
        if not profiles_running(esl.api("sofia status"), ("external", "internal")):
            return None
        if esl.api("module_exists mod_hash").strip() != "true":
            return None
        return status.splitlines()[0]


def profiles_running(summary: str, names: tuple[str, ...]) -> bool:
    """Whether `sofia status` lists every profile of `names` as RUNNING.  Its summary has one
    line per profile, `external  profile  sip:mod_sofia@127.0.0.1:5080  RUNNING (0)`;
    `sofia status profile NAME` prints the settings and never the state."""
    running = set()
    for line in summary.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "profile" and fields[3] == "RUNNING":
            running.add(fields[0])
    return running >= set(names)


def wait_ready(target: Target, timeout: float = 90.0) -> str:
    return poll(lambda: ready(target), timeout, interval=1.0,
                what=f"FreeSWITCH ready at {target.esl_host}:{target.esl_port} "
                     "(ESL auth, sofia profiles external + internal RUNNING, mod_hash)")


def core_uuid(target: Target) -> str:
    """Changes at every FreeSWITCH start: proves a restart happened."""
    return api(target, "global_getvar core_uuid").strip()


def channels_of(target: Target, account: str) -> int:
    """How many live channels FreeSWITCH shows for the account (show channels as json)."""
    doc = json.loads(api(target, "show channels as json") or "{}")
    return sum(1 for row in doc.get("rows", []) if row.get("accountcode") == account)
