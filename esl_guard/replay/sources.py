"""Replay sources, recognised by content: CDR CSV, JSON CDR (files or directories), raw ESL
captures, and gzip-compressed versions of each (by the gzip magic bytes, not the name).

Raw ESL captures go through the daemon's own reader: :class:`esl_guard.frames.FrameReader`
splits the bytes exactly as on the socket, plain events are named as
:class:`esl_guard.esl.GuardESL` names them, and :class:`esl_guard.events.EventDecoder` makes the
same lazy call events the daemon hands to the tracker, with the daemon's filters (only the
subscribed call events, only canonical UUIDs).
"""
from __future__ import annotations

import csv
import gzip
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from esl_guard.events import (
    CALL_EVENTS,
    EXECUTE_EVENTS,
    EventDecoder,
    LazyEvent,
    event_name,
    execute_wanted,
    header_end,
    header_value,
)
from esl_guard.frames import FrameReader, ProtocolError
from esl_guard.replay.cdr import Call, csv_calls, json_calls
from esl_guard.replay.problems import Problems, ReplayError
from esl_guard.safety import is_uuid

GZIP_MAGIC = b"\x1f\x8b"
SNIFF = 4096
CHUNK = 1 << 20
#: How an ESL byte stream starts: the server's auth/request, or an event frame.
_ESL_START = re.compile(rb"(Content-Type|Content-Length|Event-Name): ")
_TIMESTAMP = b"\nEvent-Date-Timestamp: "

CSV, JSON, ESL = "cdr-csv", "json-cdr", "esl"


@dataclass
class Source:
    kind: str            # CSV, JSON or ESL
    name: str            # as shown in messages
    paths: list[Path]    # one file, or the JSON CDR files of a directory


def open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it starts with the gzip magic."""
    f = open(path, "rb")  # noqa: SIM115 - returned to the caller
    if f.read(2) == GZIP_MAGIC:
        f.close()
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def _head(path: Path) -> bytes:
    try:
        with open_bytes(path) as f:
            return f.read(SNIFF)
    except (OSError, EOFError, zlib.error) as exc:
        raise ReplayError(f"{path}: cannot read: {exc}") from None


def sniff(path: Path, columns: Sequence[str]) -> str:
    """CSV, JSON or ESL, or ReplayError saying why the file is none of them."""
    head = _head(path)
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not body:
        raise ReplayError(f"{path}: empty file: not a CDR CSV, JSON CDR or ESL capture")
    if _ESL_START.match(body):
        return ESL
    if body[:1] in (b"{", b"["):
        return JSON
    if b"\0" not in body:
        first = body.split(b"\n", 1)[0].decode("utf-8", "replace")
        try:
            row = next(csv.reader([first]), [])
        except csv.Error:
            row = []
        if len(row) >= 2:
            if len(row) != len(columns) and (b"\n" in body or len(head) < SNIFF):
                raise ReplayError(
                    f"{path}: a CSV row of {len(row)} fields, but the CDR template has "
                    f"{len(columns)} (the `example` template of cdr_csv.conf.xml unless "
                    "--cdr-columns names them)")
            return CSV
    shown = body[:24].decode("ascii", "backslashreplace")
    raise ReplayError(f"{path}: not a CDR CSV (mod_cdr_csv), JSON CDR (mod_json_cdr) or raw "
                      f"ESL capture (starts with {shown!r})")


def discover(args: Sequence[str], columns: Sequence[str]) -> list[Source]:
    """Each argument: a file, or a directory (walked in name order; its JSON CDRs form one
    source, any other recognised file is a source of its own)."""
    sources: list[Source] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files = sorted(Path(root) / f for root, _, names in os.walk(path) for f in names)
            jsons = []
            for f in files:
                kind = sniff(f, columns)
                if kind == JSON:
                    jsons.append(f)
                else:
                    sources.append(Source(kind, str(f), [f]))
            if jsons:
                sources.append(Source(JSON, f"{path}/ ({len(jsons)} JSON CDR files)", jsons))
            if not files:
                raise ReplayError(f"{path}: empty directory: no CDR or ESL capture in it")
        elif path.exists():
            sources.append(Source(sniff(path, columns), str(path), [path]))
        else:
            raise ReplayError(f"{path}: cannot read: No such file or directory")
    return sources


def source_calls(src: Source, columns: Sequence[str], account_variable: str,
                 problems: Problems) -> Iterator[Call]:
    """The calls of a CDR source, in file order."""
    seq = 0
    for path in src.paths:
        name = str(path)
        try:
            with open_bytes(path) as f:
                if src.kind == CSV:
                    yield from csv_calls(f, name, columns, account_variable, problems)
                else:
                    for call in json_calls(f, name, account_variable, problems, seq):
                        seq = call[3]
                        yield call
                    seq += 1
        except (OSError, EOFError, zlib.error) as exc:
            problems.add(name, None, f"unreadable from here on: {exc}")


def esl_events(src: Source, node: str, account_variable: str,
               problems: Problems) -> Iterator[tuple[float, LazyEvent]]:
    """(recorded time, event) for each subscribed call event of a raw ESL capture, in stream
    order; the time is ``Event-Date-Timestamp``, never going backwards."""
    path = src.paths[0]
    name = str(path)
    reader = FrameReader()
    decoder = EventDecoder(node, account_variable)
    bodies: list[bytes] = []
    last = float("-inf")
    count = 0
    other = 0
    try:
        with open_bytes(path) as f:
            while chunk := f.read(CHUNK):
                try:
                    frames = reader.feed(chunk, bodies.append)
                except ProtocolError as exc:
                    raise ReplayError(f"{name}: not a readable ESL capture after {count} "
                                      f"events: {exc}") from None
                other += sum(1 for fr in frames if fr.content_type.startswith("text/event-"))
                for body in bodies:
                    count += 1
                    ev_name = event_name(body) or ""
                    if ev_name not in CALL_EVENTS or (
                            ev_name in EXECUTE_EVENTS
                            and not execute_wanted(body, header_end(body), account_variable)):
                        continue  # not subscribed, or not passing the daemon's event filters
                    ev = decoder.lazy(body, ev_name)
                    if ev is None:
                        problems.add(name, None, f"event #{count} ({ev_name}): no Unique-ID")
                        continue
                    if not is_uuid(ev.uuid):
                        problems.add(name, None, f"event #{count} ({ev_name}): Unique-ID "
                                     f"{ev.uuid[:40]!r} is not a UUID")
                        continue
                    stamp = header_value(body, _TIMESTAMP, ev.end)
                    if stamp is None or not stamp.isdigit():
                        problems.add(name, None, f"event #{count} ({ev_name}): no "
                                     "Event-Date-Timestamp")
                        continue
                    t = int(stamp) / 1e6
                    if t < last:
                        t = last
                    last = t
                    yield t, ev
                bodies.clear()
    except (OSError, EOFError, zlib.error) as exc:
        problems.add(name, None, f"unreadable after {count} events: {exc}")
    if other:
        problems.add(name, None, f"{other} events not in plain format (`event plain` is what "
                     "the daemon subscribes to) were skipped")
    if reader.buffered:
        problems.add(name, None, f"the capture ends inside a frame ({reader.buffered} bytes "
                     "ignored)")
