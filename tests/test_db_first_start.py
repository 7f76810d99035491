"""A database unreachable at the first start (issue 11, item 2): the real `esl-guard run`
process creates the schema (and runs pending migrations) as soon as the database answers, and
`fail_mode = closed` ends then.  PostgreSQL behind a cuttable TCP proxy; SQLite whose file
cannot be opened until the test makes it possible."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import gevent.subprocess
from alembic import command
from sqlalchemy.engine import make_url

from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.store import Store, StoreError
from esl_guard.store.engine import make_engine, parse_url
from esl_guard.store.migrate import alembic_config, head_revision
from tests.harness import node_section, wait_for
from tests.tcp_proxy import CuttableProxy

ROOT = Path(__file__).parent.parent


def revision(url: str) -> str | None:
    store = Store(url)
    try:
        return store.revision()
    except StoreError:
        return None
    finally:
        store.close()


def upgrade_to(url: str, rev: str) -> None:
    engine = make_engine(parse_url(url))
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), rev)
    finally:
        engine.dispose()


def test_database_unreachable_at_the_first_start(tmp_path: Path, db_url: str,
                                                 fs: FakeFreeSWITCH) -> None:
    proxy: CuttableProxy | None = None
    if db_url.startswith("postgresql"):
        upgrade_to(db_url, "0001")  # an older schema: a migration is pending
        real = make_url(db_url)
        proxy = CuttableProxy((real.host or "127.0.0.1", real.port or 5432)).start()
        proxy.cut()
        daemon_url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
    else:
        db_file = Path(make_url(db_url).database or "")
        db_file.mkdir(parents=True)  # a directory where the file goes: SQLite cannot open it
        daemon_url = db_url
    conf = tmp_path / "esl-guard.conf"
    conf.write_text(node_section(fs) + f"\n[database]\nurl = {daemon_url}\n"
                    f"journal = {tmp_path / 'journal.jsonl'}\npoll_interval = 0.2s\n"
                    "fail_mode = closed\n\n[policy]\nmax_concurrent_calls = 5\n\n"
                    "[account:probe]\nmax_concurrent_calls = 0\n")
    conf.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    proc = gevent.subprocess.Popen([sys.executable, "-m", "esl_guard", "run", "-c", str(conf)],
                                   env=env, stderr=gevent.subprocess.PIPE, cwd=str(tmp_path))
    killed = lambda u: any(k == u for k, _ in fs.kills)  # noqa: E731

    def admitted() -> bool:
        """A call of acme, then a probe call that is always hung up: once the probe is hung up,
        the daemon has decided on the call before it."""
        call, probe = fs.create_call("acme", account_on="create"), fs.create_call("probe",
                                                                                 account_on="create")
        assert wait_for(lambda: killed(probe), timeout=10)
        return not killed(call)

    try:
        assert wait_for(lambda: fs.connections == 1 and any(
            c.startswith("api show channels") for c in fs.commands), timeout=20)
        assert not admitted(), "fail_mode = closed: no call while the lock state is unknown"
        assert revision(db_url) in (None, "0001")
        if proxy is not None:
            proxy.restore()
        else:
            db_file.rmdir()
        assert wait_for(lambda: revision(db_url) == head_revision(), timeout=30)
        assert wait_for(admitted, timeout=30), "fail_mode = closed ends with the lock state known"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        stderr = proc.stderr.read().decode()
        assert "Traceback" not in stderr
        assert "database unavailable at start" in stderr and "restored 0 active locks" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proxy is not None:
            proxy.stop()
