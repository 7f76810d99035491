"""The ``failover`` row: from SIGKILL of the active instance to the end of a call that went over
its limit right after it (issue 14).

Two real ``esl-guard run`` processes with the same conf (``[cluster] failover_after`` at its
default, 10 s) on a throwaway PostgreSQL database, against the simulator over TCP; the active
is killed with SIGKILL and, at once, a call of an account whose limit is 0 is created: the
standby, which saw it and left it to the active, takes over and hangs it up.  Reported: that
time (the enforcement gap), per round, and the worst.  Without a PostgreSQL server (the tests'
``ESL_GUARD_TEST_PG_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``) the row says
so and does not count.
"""
from __future__ import annotations

import os
import random
import signal
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess

from esl_guard.cluster.roles import check_every, grace
from esl_guard.config import default_value

ROOT = Path(__file__).resolve().parent.parent
FAILOVER_AFTER = float(default_value("failover_after"))
ADMIN_URL = os.environ.get("ESL_GUARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
UP = 60.0


def _wait(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(0.01)
    return False


def _admin(url: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(url, connect_timeout=3)  # a libpq URI (TCP or ?host=/socket/dir)
    conn.autocommit = True
    return conn


@contextmanager
def throwaway_database(admin_url: str = ADMIN_URL, prefix: str = "esl_guard_bench"
                       ) -> Iterator[str]:
    """A new, empty database on the server of ``admin_url``; its URL; dropped afterwards."""
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuidlib.uuid4().hex}"
    admin = _admin(admin_url)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = _admin(admin_url)
        with admin.cursor() as cur:
            # WITH (FORCE), PostgreSQL 13+: a backend still exiting (a killed daemon's) no
            # longer fails the drop ("being accessed by other users")
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _roles(url: str) -> dict[int, str]:
    from esl_guard.store import Store

    store = Store(url)
    try:
        return {int(m["pid"]): str(m["role"]) for m in store.members()}
    finally:
        store.close()


def _start(tmp: Path, name: str, text: str) -> Any:
    d = tmp / name
    (d / "conf.d").mkdir(parents=True)
    (d / "esl-guard.conf").write_text(text)
    (d / "conf.d" / "instance.conf").write_text(f"[database]\njournal = {d / 'journal.jsonl'}\n")
    for f in (d / "esl-guard.conf", d / "conf.d" / "instance.conf"):
        f.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    return gevent.subprocess.Popen([sys.executable, "-m", "esl_guard", "run", "-c",
                                    str(d / "esl-guard.conf")], env=env, cwd=str(d),
                                   stderr=gevent.subprocess.DEVNULL)


def measure(rounds: int) -> dict[str, Any]:
    from esl_guard.simulator import FakeFreeSWITCH

    gaps: list[float] = []
    fs = FakeFreeSWITCH().start()
    procs: list[Any] = []
    try:
        with throwaway_database() as url, tempfile.TemporaryDirectory() as tmp:
            text = (f"[freeswitch]\nhost = 127.0.0.1\nport = {fs.port}\npassword = {fs.password}"
                    f"\n[database]\nurl = {url}\npoll_interval = 1s\n[policy]\n"
                    "max_concurrent_calls = 10\n[account:over]\nmax_concurrent_calls = 0\n")
            active = _start(Path(tmp), "i0", text)
            procs.append(active)
            if not _wait(lambda: _roles(url).get(active.pid) == "active", UP):
                raise TimeoutError("the first instance did not become active")
            for i in range(rounds):
                standby = _start(Path(tmp), f"i{i + 1}", text)
                procs.append(standby)
                if not _wait(lambda p=standby: _roles(url).get(p.pid) == "standby", UP):
                    raise TimeoutError("the standby did not start")
                if not _wait(lambda: fs.connections >= 2, UP):
                    raise TimeoutError("the standby did not connect")
                # A standby that has just started waits two checks before it may take the
                # lock (roles.grace); then the kill falls at a random moment of its check cycle.
                gevent.sleep(grace(FAILOVER_AFTER) + random.uniform(0, check_every(FAILOVER_AFTER)))
                active.send_signal(signal.SIGKILL)
                t0 = time.monotonic()
                call = fs.create_call("over")
                if not _wait(lambda c=call: any(u == c for u, _ in fs.kills), 3 * UP):
                    raise TimeoutError("the over-limit call was not hung up after the failover")
                gaps.append(time.monotonic() - t0)
                active.wait()
                active = standby
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except gevent.subprocess.TimeoutExpired:
                    p.kill()
        fs.stop()
    return {"rounds": gaps, "worst_s": max(gaps), "median_s": sorted(gaps)[len(gaps) // 2],
            "failover_after_s": FAILOVER_AFTER}


def row(quick: bool, in_child: Any) -> dict[str, Any]:
    try:
        _admin(ADMIN_URL).close()
    except Exception as exc:  # noqa: BLE001 - no server: the row says so
        return {"skipped": f"no PostgreSQL at {ADMIN_URL}: {' '.join(str(exc).split())}",
                "target": f"<= failover_after ({FAILOVER_AFTER:g} s)", "pass": True}
    res: dict[str, Any] = in_child(measure, 1 if quick else 3)
    res.update(target=f"<= failover_after ({FAILOVER_AFTER:g} s)",
               **{"pass": res["worst_s"] <= FAILOVER_AFTER})
    return res


def describe(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"skipped: {r['skipped'][:60]}"
    return (f"SIGKILL of the active -> over-limit call ended by the standby: worst "
            f"{r['worst_s']:.2f} s, median {r['median_s']:.2f} s of {len(r['rounds'])}")


if __name__ == "__main__":  # python -m bench.failover [ROUNDS]
    print(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
