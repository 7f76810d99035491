"""`esl-guard replay -c CONF SOURCE...`: what a policy would have done to recorded traffic."""
from __future__ import annotations

import argparse
import gc
import heapq
import math
import os
import sys
from collections.abc import Callable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any, TextIO

from esl_guard.replay.problems import Problems, ReplayError

DEFAULT_CONF = "/etc/esl-guard/esl-guard.conf"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sp: argparse.ArgumentParser = subparsers.add_parser(
        "replay", help="what-if: run a policy over recorded CDRs or ESL captures",
        description="Run the daemon's decision code over recorded traffic on its recorded "
        "clock and print what the policy would have done. SOURCE: mod_cdr_csv CSV files, "
        "mod_json_cdr files or directories of them, raw ESL event captures; gzip or not "
        "(recognised by content). *_stamp columns are local time: set TZ to the switch's.")
    sp.add_argument("sources", nargs="+", metavar="SOURCE")
    sp.add_argument("-c", "--config", default=DEFAULT_CONF, metavar="FILE",
                    help=f"the policy to replay (default {DEFAULT_CONF})")
    sp.add_argument("--json", action="store_true",
                    help="one JSON object per decision (audit --json fields + clause), "
                    "then a summary object")
    sp.add_argument("--compare", metavar="OTHER_CONF",
                    help="replay this policy too and print only what differs")
    sp.add_argument("--cdr-columns", metavar="COLUMNS",
                    help="the mod_cdr_csv template's variables, comma-separated (default: "
                    "the `example` template of cdr_csv.conf.xml)")
    return sp


def _conf(path: str) -> Any:
    from esl_guard.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise ReplayError(str(exc)) from None


def timeline(sources: list[str], columns: tuple[str, ...], account_variable: str,
             problems: Problems, unanswered_within: float = -math.inf,
             omitted: Any = None) -> tuple[Iterator[tuple[float, Any]], bool]:
    """Every source merged into one (time, event) stream; True when raw captures are in it.
    ``unanswered_within``: CDR calls answered for no longer have no CHANNEL_ANSWER, counted
    in ``omitted`` (:func:`~esl_guard.replay.engine.cdr_events`)."""
    from esl_guard.replay.cdr import sort_by_start
    from esl_guard.replay.engine import cdr_events
    from esl_guard.replay.sources import ESL, discover, esl_events, source_calls

    found = discover(sources, columns)
    streams: list[Iterator[tuple[float, Any]]] = []
    cdrs = []
    for src in found:
        if src.kind == ESL:
            node = Path(src.name).name.removesuffix(".gz")
            streams.append(esl_events(src, node, account_variable, problems))
        else:
            cdrs.append(sort_by_start(source_calls(src, columns, account_variable, problems)))
    if cdrs:
        calls = cdrs[0] if len(cdrs) == 1 else heapq.merge(*cdrs, key=itemgetter(0, 1))
        streams.append(cdr_events(calls, unanswered_within, omitted))
    merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=itemgetter(0))
    return merged, any(src.kind == ESL for src in found)


def replay(args: argparse.Namespace, out: TextIO) -> Problems:
    """Replay ``args.sources`` under ``args.config`` (and ``args.compare``), print to ``out``.

    The cyclic garbage collector is off meanwhile: a replay makes no reference cycles (its
    calls, accounts and timers are freed by reference counting as they end), and on a month
    of CDRs the collector's passes over the live objects cost about a fifth of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _replay(args, out)
    finally:
        if enabled:
            gc.enable()


def _replay(args: argparse.Namespace, out: TextIO) -> Problems:
    from esl_guard.events import LazyEvent
    from esl_guard.replay import compare
    from esl_guard.replay.cdr import EXAMPLE_COLUMNS, parse_columns
    from esl_guard.replay.engine import Engine, Omitted
    from esl_guard.replay.report import Printer

    columns = parse_columns(args.cdr_columns) if args.cdr_columns else EXAMPLE_COLUMNS
    config = _conf(args.config)
    other = _conf(args.compare) if args.compare else None
    if other is not None and other.account_variable != config.account_variable:
        raise ReplayError(f"{args.compare}: account_variable {other.account_variable} differs "
                          f"from {config.account_variable} in {args.config}: the two policies "
                          "would not see the same accounts")
    problems = Problems()
    printer: Printer | None = None
    fates: list[compare.Fates] = []
    if other is None:
        printer = Printer(out, args.json)
        engines = [Engine(config, printer)]
    else:
        fates = [compare.Fates(), compare.Fates()]
        engines = [Engine(config, fates[0]), Engine(other, fates[1])]
    omitted = Omitted()
    events, raw = timeline(args.sources, columns, config.account_variable, problems,
                           min(e.answer_matters_after for e in engines), omitted)
    appliers: list[Callable[..., None]] = [e.apply for e in engines]
    if raw:
        for t, ev in events:
            catch_up = ev.__class__ is LazyEvent
            for apply in appliers:
                apply(t, ev, catch_up)
    elif len(engines) == 1:
        engines[0].run(events)
    else:
        for t, ev in events:
            for apply in appliers:
                apply(t, ev)
    for e in engines:
        e.finish()
        e.stats.events += omitted.answers  # replayed, to no effect (cdr_events)
    stats = engines[0].stats
    if printer is not None:
        printer.finish(stats, {"bad_rows": problems.total,
                               "sources": list(args.sources)})
    else:
        totals = {"calls_seen": stats.calls, "a_calls_hung_up": len(stats.hung_up),
                  "b_calls_hung_up": len(engines[1].stats.hung_up),
                  "bad_rows": problems.total}
        compare.write(out, compare.diff(fates[0], fates[1]), (args.config, args.compare),
                      args.json, totals)
    return problems


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every source was replayed (bad rows are listed on stderr), 2 when a source
    or a conf cannot be used at all."""
    try:
        problems = replay(args, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # `esl-guard replay ... | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ReplayError as exc:
        text = str(exc)
        print(text if "\n" in text else f"esl-guard replay: {text}", file=sys.stderr)
        return 2
    for line in problems.lines():
        print(f"esl-guard replay: {line}", file=sys.stderr)
    return 0
