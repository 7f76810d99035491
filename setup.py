"""The build: what setup.cfg cannot say.

The modules of the decision hot path (the tracker, the policy rules, the replay engine: pure,
fully typed, no I/O) are compiled with mypyc when a C compiler is at hand; they then run about
1.5 times as fast, in the daemon and in ``esl-guard replay``.  Without a compiler, or with
``ESL_GUARD_PURE=1``, or if mypyc refuses, the very same modules run as plain Python (a
warning says so); ``esl_guard.compiled()`` tells which.  ``tests/conftest.py`` refuses to test a
compiled module older than its source.
"""
from __future__ import annotations

import os
import sys

from setuptools import setup

#: Compiled by mypyc (paths).  Not here: modules that use dynamic attributes
#: (esl_guard/admitting.py), dataclasses with hand-set private fields (esl_guard/model.py),
#: and everything that does I/O (it waits on the network, not on the CPU).
COMPILED = [
    "esl_guard/timers.py", "esl_guard/usage.py", "esl_guard/callstate.py",
    "esl_guard/classes.py", "esl_guard/gates.py", "esl_guard/tracker_locks.py",
    "esl_guard/tracker_nodes.py", "esl_guard/tracker.py", "esl_guard/safety.py",
    "esl_guard/policy/__init__.py", "esl_guard/policy/admission.py",
    "esl_guard/policy/calls.py", "esl_guard/policy/destinations.py",
    "esl_guard/policy/detectors.py", "esl_guard/policy/duration.py", "esl_guard/policy/gate.py",
    "esl_guard/policy/locks.py", "esl_guard/policy/minutes.py", "esl_guard/policy/verdict.py",
    "esl_guard/policy/windows.py", "esl_guard/replay/cdr.py", "esl_guard/replay/engine.py",
]


def ext_modules() -> list:
    if os.environ.get("ESL_GUARD_PURE") == "1":
        return []
    try:
        from mypyc.build import mypycify

        exts = mypycify(["--python-version", "%d.%d" % sys.version_info[:2], *COMPILED],
                        opt_level="3")
    except BaseException as exc:  # mypyc missing or refusing (SystemExit on a type error)
        print(f"esl-guard: not compiling the hot path ({exc!r}): plain Python",
              file=sys.stderr)
        return []
    for ext in exts:
        ext.optional = True  # no C compiler: a warning, and the modules run as Python
    return exts


setup(ext_modules=ext_modules())
