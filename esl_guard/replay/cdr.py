"""CDR records (mod_cdr_csv, mod_json_cdr) -> calls in start order, in bounded memory.

A call is a tuple ``(start, order, uuid, seq, account, answer, end, bleg_uuid, b_leg,
destination)`` (times in epoch seconds, ``answer`` None when never answered, ``destination`` the
dialled number, ``destination_number``, or None).  Tuples, not objects: a month of
CDRs is tens of millions of rows.

Order.  Both modules write a record when a call ENDS (mod_cdr_csv appends a line to Master.csv,
mod_json_cdr writes one file), so a file is in end order, while the policy must see each call
begin at its start.  :func:`sort_by_start` sorts exactly with an external merge sort: runs of
``RUN`` records are sorted in memory and, beyond the first, spilled to anonymous temporary files,
then merged.  Memory is bounded by the run size whatever the file size, no call is ever
dropped or replayed late however long it lasted, and a file already in order costs one pass.

Formats, from FreeSWITCH's sources:

* mod_cdr_csv expands a template per call and appends it unescaped; the default
  ``cdr_csv.conf.xml`` uses the ``example`` template below (every field in double quotes) and
  ``legs = a``.  ``*_stamp`` values are local time with one-second resolution ("%Y-%m-%d %T"),
  read in the replay's time zone (set ``TZ`` to the switch's); a template may carry
  ``${start_uepoch}`` etc. instead for microseconds.  A value holding a double quote or a
  newline breaks the line: such rows are reported and skipped.
* mod_json_cdr writes ``<uuid>.cdr.json`` (``a_<uuid>`` with prefix-a-leg) holding one JSON
  object and a newline: ``variables`` (values URL-encoded unless ``encode-values = false``)
  with ``uuid``, ``start_uepoch``, ``answer_uepoch`` (0 when never answered), ``end_uepoch``,
  ``destination_number`` (else the first caller profile's) and the account variable;
  ``channel_data.direction``; ``callflow`` (an object, or a list)
  whose ``caller_profile`` has ``originator`` on the B-leg of a bridge and ``times``
  (``created_time``, ``answered_time``, ``hangup_time``, microseconds).
"""
from __future__ import annotations

import bisect
import csv
import datetime as dt
import heapq
import io
import json
import marshal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from sys import intern
from typing import IO, Any
from urllib.parse import unquote

from esl_guard.replay.problems import Problems, ReplayError
from esl_guard.safety import UUID_RE, is_uuid

#: The ``example`` template of FreeSWITCH's default conf/vanilla/autoload_configs/cdr_csv.conf.xml.
EXAMPLE_COLUMNS = (
    "caller_id_name", "caller_id_number", "destination_number", "context", "start_stamp",
    "answer_stamp", "end_stamp", "duration", "billsec", "hangup_cause", "uuid", "bleg_uuid",
    "accountcode", "read_codec", "write_codec",
)

RUN = 200_000          # records sorted in memory per run of the external sort
SPILL_CHUNK = 4096     # records per marshal frame in a spilled run

Call = tuple[float, int, str, int, "str | None", "float | None", float, str, bool, "str | None"]


class StampParser:
    """``YYYY-MM-DD HH:MM:SS`` in local time -> epoch seconds; mktime once per hour seen, and
    the last few thousand stamps remembered (a busy switch writes the same second many times)."""

    CACHE = 4096

    def __init__(self) -> None:
        self._hours: dict[str, float] = {}
        self._seen: dict[str, float | None] = {}

    def __call__(self, text: str) -> float | None:
        seen = self._seen.get(text)
        if seen is not None:
            return seen
        value = self._parse(text)
        if len(self._seen) >= self.CACHE:
            self._seen.clear()
        self._seen[text] = value
        return value

    def _parse(self, text: str) -> float | None:
        if not text:
            return None
        base = self._hours.get(text[:13])
        if base is None:
            base = self._hour(text[:13])
        if len(text) != 19 or text[13] != ":" or text[16] != ":":
            raise ValueError(f"bad time stamp {text[:40]!r}")
        mm, ss = text[14:16], text[17:19]
        if not (mm.isdigit() and ss.isdigit()) or mm >= "60" or ss >= "61":
            raise ValueError(f"bad time stamp {text[:40]!r}")
        return base + int(mm) * 60 + int(ss)

    def _hour(self, prefix: str) -> float:
        try:
            parsed = dt.datetime.strptime(prefix, "%Y-%m-%d %H")
        except ValueError:
            raise ValueError(f"bad time stamp {prefix[:40]!r}") from None
        base = self._hours[prefix] = time.mktime(parsed.timetuple())
        return base


def _epoch(text: str) -> float | None:
    if not text:
        return None
    value = float(text)
    return None if value == 0 else value


def _uepoch(text: str) -> float | None:
    if not text:
        return None
    value = int(text)
    return None if value == 0 else value / 1e6


def _time_column(columns: Sequence[str], what: str,
                 stamps: StampParser) -> tuple[int, Callable[[str], float | None]] | None:
    for suffix, conv in (("uepoch", _uepoch), ("epoch", _epoch), ("stamp", stamps)):
        name = f"{what}_{suffix}"
        if name in columns:
            return columns.index(name), conv
    return None


def parse_columns(text: str) -> tuple[str, ...]:
    """``--cdr-columns``: the template's variable names, comma-separated, ``${name}`` allowed."""
    names = tuple(c.strip().strip('"').removeprefix("${").removesuffix("}").strip()
                  for c in text.split(","))
    if not names or any(not n for n in names):
        raise ReplayError(f"--cdr-columns {text!r}: expected comma-separated variable names")
    if len(set(names)) != len(names):
        raise ReplayError(f"--cdr-columns {text!r}: a column is named twice")
    return names


def csv_calls(stream: IO[bytes], name: str, columns: Sequence[str], account_variable: str,
              problems: Problems) -> Iterator[Call]:
    """The calls of one mod_cdr_csv file, in file order (end order)."""
    stamps = StampParser()
    missing = [c for c in ("uuid",) if c not in columns]
    start_col = _time_column(columns, "start", stamps)
    end_col = _time_column(columns, "end", stamps)
    answer_col = _time_column(columns, "answer", stamps)
    if missing or start_col is None or end_col is None:
        need = "uuid, start_stamp (or start_epoch/start_uepoch), end_stamp (or end_*)"
        raise ReplayError(f"{name}: the CDR columns lack what a replay needs ({need}); "
                          "give the template's columns with --cdr-columns")
    i_uuid = columns.index("uuid")
    acct_name = account_variable if account_variable in columns else "accountcode"
    i_acct = columns.index(acct_name) if acct_name in columns else None
    i_bleg = columns.index("bleg_uuid") if "bleg_uuid" in columns else None
    i_dest = columns.index("destination_number") if "destination_number" in columns else None
    i_start, conv_start = start_col
    i_end, conv_end = end_col
    i_ans, conv_ans = answer_col if answer_col is not None else (None, None)
    width = len(columns)
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
    seq = line = 0
    quotes = 2 * width
    uuid_match = UUID_RE.fullmatch  # is_uuid, for the str a CSV field is
    for raw in text:
        line += 1
        body = raw.rstrip("\r\n")
        if not body:
            continue
        # The fields, without a CSV parser for the lines that need none (the example template
        # quotes every field; mod_cdr_csv escapes nothing, so a quote or a line break inside
        # a value can only break its line): no quote at all, or only the quotes around each
        # field.  Any other line goes through csv, strictly (a stray quote is an error).
        if '"' not in body:
            row = body.split(",")
        elif body[0] == '"' and body[-1] == '"' and body.count('"') == quotes:
            row = body[1:-1].split('","')
        else:
            try:
                row = next(csv.reader((body,), strict=True))
            except csv.Error as exc:
                problems.add(name, line, f"unreadable CSV row ({exc}): a quote or "
                             "newline inside a value")
                continue
        if len(row) != width:
            problems.add(name, line, f"{len(row)} fields, expected {width} (a quote or "
                         "newline inside a value, or a different template: --cdr-columns)")
            continue
        uuid = row[i_uuid]
        if uuid_match(uuid) is None:
            problems.add(name, line, f"uuid {uuid[:40]!r} is not a channel UUID")
            continue
        try:
            start = conv_start(row[i_start])
            end = conv_end(row[i_end])
            answer = conv_ans(row[i_ans]) if i_ans is not None and conv_ans else None
        except ValueError as exc:
            problems.add(name, line, str(exc) if "stamp" in str(exc) else f"bad time: {exc}")
            continue
        if start is None or end is None or end < start or (
                answer is not None and not start <= answer <= end):
            problems.add(name, line, "start/answer/end times missing or out of order")
            continue
        account = row[i_acct] if i_acct is not None else ""
        bleg = row[i_bleg] if i_bleg is not None else ""
        number = intern(row[i_dest]) if i_dest is not None else ""  # a few numbers repeat a lot
        seq += 1
        yield (start, 0 if bleg else 1, uuid, seq, account or None, answer, end, bleg, False,
               number or None)


def _times_of(cdr: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    var = cdr.get("variables") or {}
    start = _uepoch(str(var.get("start_uepoch", ""))) or _epoch(str(var.get("start_epoch", "")))
    answer = _uepoch(str(var.get("answer_uepoch", ""))) or _epoch(str(var.get("answer_epoch", "")))
    end = _uepoch(str(var.get("end_uepoch", ""))) or _epoch(str(var.get("end_epoch", "")))
    if start is None or end is None:
        flows = _callflows(cdr)
        times = flows[-1].get("times") if flows else None  # the first profile is created first
        if isinstance(times, dict):
            start = start or _uepoch(str(times.get("created_time", "")))
            answer = answer or _uepoch(str(times.get("answered_time", "")))
            end = end or _uepoch(str(times.get("hangup_time", "")))
    return start, answer, end


def _callflows(cdr: dict[str, Any]) -> list[dict[str, Any]]:
    flow = cdr.get("callflow")
    if isinstance(flow, dict):
        return [flow]
    if isinstance(flow, list):
        return [f for f in flow if isinstance(f, dict)]
    return []


def _value(var: dict[str, Any], key: str) -> str:
    value = var.get(key)
    if not isinstance(value, str):
        return ""
    return unquote(value, errors="replace") if "%" in value else value


def json_call(cdr: Any, account_variable: str, seq: int) -> Call | str:
    """One mod_json_cdr object -> a call, or the reason it is unusable."""
    if not isinstance(cdr, dict) or not isinstance(cdr.get("variables"), dict):
        return "not a mod_json_cdr object (no \"variables\")"
    var = cdr["variables"]
    uuid = _value(var, "uuid")
    flows = _callflows(cdr)
    if not uuid and flows:
        profile = flows[0].get("caller_profile")
        uuid = str(profile.get("uuid", "")) if isinstance(profile, dict) else ""
    if not is_uuid(uuid):
        return f"uuid {uuid[:40]!r} is not a channel UUID"
    try:
        start, answer, end = _times_of(cdr)
    except ValueError as exc:
        return f"bad time: {exc}"
    if start is None or end is None or end < start or (
            answer is not None and not start <= answer <= end):
        return "start/answer/end times missing or out of order"
    channel = cdr.get("channel_data")
    outbound = isinstance(channel, dict) and channel.get("direction") == "outbound"
    originated = any(isinstance(f.get("caller_profile"), dict)
                     and "originator" in f["caller_profile"] for f in flows) \
        or bool(var.get("originating_leg_uuid") or var.get("originator"))
    account = _value(var, account_variable) or None
    bleg = _value(var, "bleg_uuid")
    return (start, 0 if bleg else 1, uuid, seq, account, answer, end, bleg,
            outbound and originated, _destination(var, flows))


def _destination(var: dict[str, Any], flows: list[dict[str, Any]]) -> str | None:
    """The dialled number: ``destination_number``, else that of the first caller profile (the
    call as it was dialled, before any transfer), as the daemon reads it on the A-leg's
    CHANNEL_CREATE."""
    number = _value(var, "destination_number")
    if not number and flows:
        profile = flows[-1].get("caller_profile")
        value = profile.get("destination_number") if isinstance(profile, dict) else None
        number = value if isinstance(value, str) else ""
    return number or None


def json_calls(stream: IO[bytes], name: str, account_variable: str,
               problems: Problems, seq0: int = 0) -> Iterator[Call]:
    """The calls of one JSON CDR file: one object (mod_json_cdr), or one object per line."""
    data = stream.read()
    text = data.decode("utf-8", "replace")
    try:
        docs: list[tuple[int, Any]] = [(1, json.loads(text))]
    except (ValueError, RecursionError):
        docs = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                docs.append((n, json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.add(name, n, f"not valid JSON: {exc.msg}")
            except (ValueError, RecursionError) as exc:
                problems.add(name, n, f"not valid JSON: {exc.__class__.__name__}")
    for n, doc in docs:
        seq0 += 1
        call = json_call(doc, account_variable, seq0)
        if isinstance(call, str):
            problems.add(name, n, call)
        else:
            yield call


# --------------------------------------------------------------------------- order


def _spill(run: list[Call], chunk: int) -> IO[bytes]:
    f = tempfile.TemporaryFile()
    for i in range(0, len(run), chunk):
        blob = marshal.dumps(run[i:i + chunk])
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
    f.seek(0)
    return f


def _unspill(f: IO[bytes]) -> Iterator[list[Call]]:
    # Length-prefixed blobs: marshal.load() on a file reads it in tiny pieces.
    while size := int.from_bytes(f.read(8), "little"):
        yield marshal.loads(f.read(size))  # our own anonymous temporary file


def _slices(buf: list[Call], chunk: int) -> Iterator[list[Call]]:
    for i in range(0, len(buf), chunk):
        yield buf[i:i + chunk]


def merge_chunks(runs: list[Iterator[list[Call]]]) -> Iterator[Call]:
    """A k-way merge of sorted runs, each given as sorted chunks, a slice at a time: the
    smallest head's chunk is emitted up to the next smallest head (found by bisection).  Runs of
    an end-ordered CDR file overlap only around their boundaries, so nearly every chunk goes out
    whole, without a heap operation per record as in ``heapq.merge``."""
    heap: list[tuple[Call, int, int, list[Call]]] = []
    for i, it in enumerate(runs):
        chunk = next(it, None)
        if chunk:
            heap.append((chunk[0], i, 0, chunk))
    heapq.heapify(heap)
    while heap:
        _, i, lo, chunk = heap[0]
        if len(heap) == 1:
            yield from chunk[lo:]
            for rest in runs[i]:
                yield from rest
            return
        bound = heap[1][0] if len(heap) == 2 or heap[1][0] < heap[2][0] else heap[2][0]
        hi = bisect.bisect_right(chunk, bound, lo)
        yield from chunk[lo:hi]
        if hi < len(chunk):
            heapq.heapreplace(heap, (chunk[hi], i, hi, chunk))
        else:
            chunk = next(runs[i], [])
            if chunk:
                heapq.heapreplace(heap, (chunk[0], i, 0, chunk))
            else:
                heapq.heappop(heap)


def sort_by_start(calls: Iterable[Call], run: int = RUN,
                  chunk: int = SPILL_CHUNK) -> Iterator[Call]:
    """``calls`` sorted by (start, order, uuid, seq) in memory bounded by ``run`` records: calls
    starting at the same instant are taken in uuid order, whatever the file order or format."""
    spills: list[IO[bytes]] = []
    calls = iter(calls)
    try:
        buf = list(islice(calls, run))
        while len(buf) >= run:
            buf.sort()
            spills.append(_spill(buf, chunk))
            buf = list(islice(calls, run))
        buf.sort()
        if not spills:
            yield from buf
            return
        yield from merge_chunks([*(_unspill(f) for f in spills), _slices(buf, chunk)])
    finally:
        for f in spills:
            f.close()
