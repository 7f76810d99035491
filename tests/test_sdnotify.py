"""The systemd notify protocol, over a real unix datagram socket."""
from __future__ import annotations

import os
import socket

from esl_guard.sdnotify import Notifier


def test_ready_status_and_watchdog_reach_the_socket(tmp_path) -> None:
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000",
                  "WATCHDOG_PID": str(os.getpid())})
    assert n.enabled and n.watchdog_interval == 2.0
    n.ready("1/1 nodes connected")
    n.watchdog()
    assert server.recv(256) == b"READY=1\nSTATUS=1/1 nodes connected"
    assert server.recv(256) == b"WATCHDOG=1"
    server.close()


def test_without_notify_socket_it_is_silent() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    n.ready()  # must not raise


def test_watchdog_for_another_pid_is_ignored() -> None:
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "100",
                     "WATCHDOG_PID": "1"}).watchdog_interval is None
