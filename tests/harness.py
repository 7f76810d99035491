"""Test harness: the real Daemon in a greenlet against FakeFreeSWITCH over real TCP."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gevent

from esl_guard.config import load_config
from esl_guard.daemon import Daemon
from esl_guard.simulator import FakeFreeSWITCH


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` (yielding to the hub) until true or the deadline passes."""
    # The loop's clock is cached: after a test that blocked without the hub for minutes
    # (subprocesses), it is that far behind, and the deadline would already be past.
    gevent.get_hub().loop.update_now()
    deadline = gevent.get_hub().loop.now() + timeout
    while True:
        if predicate():
            return True
        if gevent.get_hub().loop.now() > deadline:
            return False
        gevent.sleep(0.01)
        gevent.get_hub().loop.update_now()


def node_section(fs: FakeFreeSWITCH, name: str | None = None, **extra: str) -> str:
    header = "[freeswitch]" if name is None else f"[freeswitch:{name}]"
    lines = [header, "host = 127.0.0.1", f"port = {fs.port}", f"password = {fs.password}"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


class Harness:
    def __init__(self, tmp_path: Path, db_url: str, fs: FakeFreeSWITCH) -> None:
        self.tmp = tmp_path
        self.db_url = db_url
        self.fs = fs
        self.conf = tmp_path / "esl-guard.conf"
        self.daemon: Daemon | None = None
        self.runner: gevent.Greenlet | None = None

    def write(self, policy: str, *, nodes: str | None = None, extra: str = "") -> Path:
        self.conf.write_text(
            (nodes if nodes is not None else node_section(self.fs))
            + f"\n[database]\nurl = {self.db_url}\njournal = {self.tmp / 'journal.jsonl'}\n"
            + "poll_interval = 0.2s\n"
            + f"\n[policy]\n{policy}\n{extra}\n")
        self.conf.chmod(0o600)
        return self.conf

    def start(self, policy: str = "", *, nodes: str | None = None, extra: str = "",
              wait_nodes: int = 1) -> Daemon:
        if policy or nodes or extra or not self.conf.exists():
            self.write(policy, nodes=nodes, extra=extra)
        daemon = Daemon(str(self.conf), load_config(self.conf))
        self.daemon = daemon
        self.runner = gevent.spawn(daemon.run)
        assert wait_for(lambda: sum(1 for s in daemon.guard.sync.values() if s.ok) >= wait_nodes,
                        timeout=10), "the daemon did not connect and resync"
        return daemon

    def stop(self) -> int | None:
        if self.daemon is None or self.runner is None:
            return None
        self.daemon.request_stop()
        self.runner.join(timeout=20)
        code = self.runner.value
        self.daemon = self.runner = None
        return code

    def killed(self, uuid: str) -> bool:
        return any(u == uuid for u, _ in self.fs.kills)


def cli(argv: list[str]) -> int:
    """The CLI in a native thread: it blocks on the DB while the hub keeps serving sockets."""
    from esl_guard.cli import main

    return int(gevent.get_hub().threadpool.spawn(main, argv).get(timeout=60))
