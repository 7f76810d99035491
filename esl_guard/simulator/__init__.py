"""A fake FreeSWITCH event socket (inbound mode) for tests, ``esl-guard demo`` and benchmarks.

Real TCP, pure gevent (no monkey patching), byte shapes and event templates taken from real
FreeSWITCH 1.10.12 captures::

    from esl_guard.simulator import FakeFreeSWITCH
    fs = FakeFreeSWITCH(password="ClueCon").start()
    uuid = fs.create_call("acme", account_on="answer")
    fs.answer(uuid)
    fs.hangup(uuid)
    fs.stop()
"""
from __future__ import annotations

from esl_guard.simulator.server import FakeFreeSWITCH
from esl_guard.simulator.templates import render_event
from esl_guard.simulator.wire import fs_url_decode, fs_url_encode

__all__ = ["FakeFreeSWITCH", "render_event", "fs_url_encode", "fs_url_decode"]
