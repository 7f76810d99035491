"""Render realistic plain events from real FreeSWITCH events (package data ``data/*.txt``).

A template is a captured event body with its per-call values replaced by ``str.format_map``
fields; rendering is a dict build plus one ``format_map`` (no parsing per event). Values given
to the renderer must already be URL-encoded the FreeSWITCH way (:func:`wire.fs_url_encode`).
"""
from __future__ import annotations

import functools
import operator
import re
import time
from collections.abc import Mapping
from importlib import resources
from itertools import chain

from esl_guard.simulator.wire import frame_event_json, frame_event_plain, fs_url_encode, plain_to_json

# Channel event templates: (event name, leg kind) -> template name. Leg kinds: "A" unbridged
# inbound leg, "R" inbound leg that ends without answer, "AB" A-leg of a bridged call, "B" B-leg.
_CHANNEL_TEMPLATES: dict[tuple[str, str], str] = {
    ("CHANNEL_CREATE", "A"): "A_CREATE",
    ("CHANNEL_CREATE", "R"): "A_CREATE",
    ("CHANNEL_CREATE", "AB"): "A_CREATE",
    ("CHANNEL_ANSWER", "A"): "A_ANSWER",
    ("CHANNEL_HANGUP", "A"): "A_HANGUP",
    ("CHANNEL_HANGUP_COMPLETE", "A"): "A_HANGUP_COMPLETE",
    ("CHANNEL_DESTROY", "A"): "A_DESTROY",
    ("CHANNEL_HANGUP", "R"): "R_HANGUP",
    ("CHANNEL_HANGUP_COMPLETE", "R"): "R_HANGUP_COMPLETE",
    ("CHANNEL_DESTROY", "R"): "R_DESTROY",
    ("CHANNEL_ANSWER", "AB"): "AB_ANSWER",
    ("CHANNEL_BRIDGE", "AB"): "AB_BRIDGE",
    ("CHANNEL_HANGUP", "AB"): "AB_HANGUP",
    ("CHANNEL_UNBRIDGE", "AB"): "AB_UNBRIDGE",
    ("CHANNEL_HANGUP_COMPLETE", "AB"): "AB_HANGUP_COMPLETE",
    ("CHANNEL_DESTROY", "AB"): "AB_DESTROY",
    ("CHANNEL_CREATE", "B"): "B_CREATE",
    ("CHANNEL_ANSWER", "B"): "B_ANSWER",
    ("CHANNEL_HANGUP", "B"): "B_HANGUP",
    ("CHANNEL_HANGUP_COMPLETE", "B"): "B_HANGUP_COMPLETE",
    ("CHANNEL_DESTROY", "B"): "B_DESTROY",
}
CHANNEL_EVENTS = frozenset(name for name, _ in _CHANNEL_TEMPLATES)

DEFAULT_CORE_UUID = "0a18d057-bdc1-42bb-b8e2-c047a6c033bc"


def load_templates() -> dict[str, tuple[str, ...]]:
    """Template name -> its lines, from the package data files ``data/NAME.txt`` (written by
    ``python -m esl_guard.simulator._gen_templates``; a first ``#`` line names the capture)."""
    out: dict[str, tuple[str, ...]] = {}
    for entry in sorted(resources.files("esl_guard.simulator").joinpath("data").iterdir(),
                        key=lambda e: e.name):
        if not entry.name.endswith(".txt"):
            continue
        lines = entry.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if lines and lines[0].startswith("#"):
            lines.pop(0)
        out[entry.name[:-len(".txt")]] = tuple(lines)
    if not out:  # pragma: no cover - a broken installation
        raise RuntimeError("esl_guard/simulator/data/*.txt missing: reinstall esl-guard")
    return out


@functools.cache
def compiled() -> dict[str, str]:
    """Template name -> the whole plain body with ``{field}`` placeholders (trailing blank line
    included); optional lines (``{vars}``, ``{job_arg}``) render to "" or to whole lines."""
    out: dict[str, str] = {}
    for name, lines in load_templates().items():
        text = "\n".join(lines) + "\n"
        text = text.replace("{vars}\n", "{vars}").replace("{job_arg}\n", "{job_arg}")
        if name != "BACKGROUND_JOB":
            text += "\n"
        out[name] = text
    return out


class _Split:
    """A template cut at its fields: rendering is one C-level join, no format parsing."""

    __slots__ = ("literals", "getter", "tail")

    def __init__(self, text: str) -> None:
        pieces = _FIELD_RE.split(text)
        self.literals = tuple(pieces[0:-1:2])
        names = pieces[1::2]
        self.getter = operator.itemgetter(*names) if len(names) > 1 else (
            lambda values, _n=names[0]: (values[_n],))
        self.tail = pieces[-1]

    def render(self, values: Mapping[str, str]) -> str:
        return "".join(chain.from_iterable(zip(self.literals, self.getter(values), strict=True))) + self.tail


_FIELD_RE = re.compile(r"\{([a-z_0-9]+)\}")


@functools.cache
def _split() -> dict[str, _Split]:
    return {name: _Split(text) for name, text in compiled().items()}


def template_for(name: str, kind: str) -> str:
    try:
        return _CHANNEL_TEMPLATES[(name, kind)]
    except KeyError:
        raise ValueError(f"no template for {name} on a leg of kind {kind!r}") from None


# ---- values ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _second_strings(sec: int) -> tuple[str, str, str]:
    """(local "%Y-%m-%d %H:%M:%S", RFC 822 GMT, RFC 2822 local), all FreeSWITCH-encoded."""
    local = time.localtime(sec)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", local)
    gmt = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(sec))
    rfc2822 = time.strftime("%a, %d %b %Y %H:%M:%S ", local) + time.strftime("%z", local)
    return fs_url_encode(stamp), fs_url_encode(gmt), fs_url_encode(rfc2822)


def local_stamp(us: int) -> str:
    """Plain (not encoded) local "%Y-%m-%d %H:%M:%S" for ``show`` output."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us // 1_000_000))


def now_us() -> int:
    return time.time_ns() // 1000


def event_header_values(seq: int, ts_us: int, core: str, host: str) -> dict[str, str]:
    local, gmt, _ = _second_strings(ts_us // 1_000_000)
    return {"seq": str(seq), "ts": str(ts_us), "date_local": local, "date_gmt": gmt,
            "core": core, "host": host}


def vars_block(account: str | None, variable: str, extra_vars: Mapping[str, str] | None) -> str:
    """The optional ``variable_*`` lines: the account variable (if known) and extra variables."""
    lines = []
    if account is not None:
        lines.append(f"variable_{variable}: {fs_url_encode(account) or '_undef_'}\n")
    if extra_vars:
        for key, value in extra_vars.items():
            lines.append(f"variable_{key}: {fs_url_encode(str(value)) or '_undef_'}\n")
    return "".join(lines)


def time_values(created_us: int, answered_us: int, hangup_us: int) -> dict[str, str]:
    """Every timestamp and duration field of a channel event, from three instants (0 = not yet)."""
    c_loc = _second_strings(created_us // 1_000_000)
    a_loc = _second_strings(answered_us // 1_000_000) if answered_us else ("", "", "")
    h_loc = _second_strings(hangup_us // 1_000_000) if hangup_us else ("", "", "")
    end = hangup_us or created_us
    dur = max(0, end - created_us)
    bill = max(0, end - answered_us) if answered_us else 0
    ans = max(0, answered_us - created_us) if answered_us else 0
    return {
        "created_us": str(created_us), "created_s": str(created_us // 1_000_000),
        "created_stamp": c_loc[0], "rfc2822": c_loc[2],
        "answered_us": str(answered_us), "answered_s": str(answered_us // 1_000_000),
        "answered_stamp": a_loc[0] or "0",
        "hangup_us": str(hangup_us), "hangup_s": str(hangup_us // 1_000_000),
        "hangup_stamp": h_loc[0] or "0",
        "dur_s": str(dur // 1_000_000), "dur_ms": str(dur // 1000), "dur_us": str(dur),
        "bill_s": str(bill // 1_000_000), "bill_ms": str(bill // 1000), "bill_us": str(bill),
        "ans_s": str(ans // 1_000_000), "ans_ms": str(ans // 1000), "ans_us": str(ans),
    }


def render_body(template: str, values: Mapping[str, str]) -> bytes:
    """The plain event body of ``template`` with ``values`` (a KeyError names a missing field)."""
    return _split()[template].render(values).encode("utf-8", "surrogateescape")


def frame(body: bytes, fmt: str = "plain") -> bytes:
    if fmt == "json":
        return frame_event_json(plain_to_json(body))
    return frame_event_plain(body)


# ---- the benchmark / replay entry point -----------------------------------------------------

def render_event(
    name: str,
    uuid: str | None,
    *,
    account: str | None = None,
    variable: str = "accountcode",
    seq: int,
    b_leg: bool = False,
    other_leg: str | None = None,
    cause: str | None = None,
    answered: bool = True,
    caller: str | None = None,
    dest: str = "9001",
    direction: str = "inbound",
    extra_vars: Mapping[str, str] | None = None,
    ts_us: int | None = None,
    created_us: int | None = None,
    answered_us: int | None = None,
    core_uuid: str = DEFAULT_CORE_UUID,
    hostname: str = "sim",
    port: int = 15100,
    fmt: str = "plain",
    caller_id: str | None = None,
    source_ip: str = "127.0.0.1",
    context: str = "public",
) -> bytes:
    """Render one complete framed event (outer ``Content-Length``/``Content-Type`` included).

    ``name``: CHANNEL_CREATE, CHANNEL_ANSWER, CHANNEL_BRIDGE, CHANNEL_UNBRIDGE, CHANNEL_HANGUP,
    CHANNEL_HANGUP_COMPLETE, CHANNEL_DESTROY, HEARTBEAT or SHUTDOWN. ``account`` is put into
    ``variable_<variable>`` (absent when None); the caller's SIP identity (``Caller-Username``,
    ``Channel-Name``, ...) is ``caller`` (default: the account, or ``anonymous``). A B-leg
    (``b_leg=True``) needs ``other_leg`` = the A-leg; an A-leg with ``other_leg`` is bridged.
    ``answered=False`` picks the never-answered forms of the hangup events.
    """
    ts = ts_us if ts_us is not None else now_us()
    header = event_header_values(seq, ts, core_uuid, hostname)
    if name in ("HEARTBEAT", "SHUTDOWN"):
        header.update(uptime=fs_url_encode(format_uptime(0)), uptime_ms="0", sessions="0",
                      since_startup="0", peak="0")
        return frame(render_body(name, header), fmt)
    if uuid is None:
        raise ValueError(f"{name} needs a uuid")
    if b_leg:
        if other_leg is None:
            raise ValueError("a B-leg event needs other_leg (the A-leg uuid)")
        kind, a, b = "B", other_leg, uuid
    elif other_leg is not None:
        kind, a, b = "AB", uuid, other_leg
    else:
        kind, a, b = ("A" if answered or name in ("CHANNEL_CREATE", "CHANNEL_ANSWER") else "R"), uuid, ""
    template = template_for(name, kind)
    created = created_us if created_us is not None else ts
    ans = 0
    if kind != "R" and name != "CHANNEL_CREATE":
        ans = answered_us if answered_us is not None else created
    hung = ts if name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY",
                          "CHANNEL_UNBRIDGE") else 0
    the_cause = (cause or "NORMAL_CLEARING").upper()
    the_caller = caller if caller is not None else (account if account else "anonymous")
    header.update(time_values(created, ans, hung))
    header.update(
        a=a, b=b, dest=fs_url_encode(dest), direction=fs_url_encode(direction),
        port=str(port), session_id="1", call_id=f"1-{port}%40127.0.0.1",
        vars=vars_block(account, variable, extra_vars),
        cause=the_cause, q850=str(q850(the_cause)), other_cause="NORMAL_CLEARING",
        disposition=("send_refuse" if kind == "R" else "recv_bye"),
    )
    header["from"] = fs_url_encode(the_caller) or "_undef_"
    header["cid"] = fs_url_encode(the_caller if caller_id is None else caller_id) or "_undef_"
    header["ip"] = fs_url_encode(source_ip) or "_undef_"
    header["context"] = fs_url_encode(context) or "_undef_"
    return frame(render_body(template, header), fmt)


def format_uptime(us: int) -> str:
    """FreeSWITCH's uptime text: ``0 years, 0 days, 0 hours, 2 minutes, 19 seconds, ...``."""
    ms, micro = divmod(us, 1000)
    sec, milli = divmod(ms, 1000)
    minutes, sec = divmod(sec, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    years, days = divmod(days, 365)
    return (f"{years} years, {days} days, {hours} hours, {minutes} minutes, {sec} seconds, "
            f"{milli} milliseconds, {micro} microseconds")


# Q.850 codes of FreeSWITCH's hangup causes (switch_channel.c CAUSE_CHART).
CAUSES: dict[str, int] = {
    "NONE": 0, "UNALLOCATED_NUMBER": 1, "NO_ROUTE_TRANSIT_NET": 2, "NO_ROUTE_DESTINATION": 3,
    "CHANNEL_UNACCEPTABLE": 6, "CALL_AWARDED_DELIVERED": 7, "NORMAL_CLEARING": 16,
    "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19, "SUBSCRIBER_ABSENT": 20,
    "CALL_REJECTED": 21, "NUMBER_CHANGED": 22, "REDIRECTION_TO_NEW_DESTINATION": 23,
    "EXCHANGE_ROUTING_ERROR": 25, "DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28,
    "FACILITY_REJECTED": 29, "RESPONSE_TO_STATUS_ENQUIRY": 30, "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34, "NETWORK_OUT_OF_ORDER": 38, "NORMAL_TEMPORARY_FAILURE": 41,
    "SWITCH_CONGESTION": 42, "ACCESS_INFO_DISCARDED": 43, "REQUESTED_CHAN_UNAVAIL": 44,
    "PRE_EMPTED": 45, "FACILITY_NOT_SUBSCRIBED": 50, "OUTGOING_CALL_BARRED": 52,
    "INCOMING_CALL_BARRED": 54, "BEARERCAPABILITY_NOTAUTH": 57, "BEARERCAPABILITY_NOTAVAIL": 58,
    "SERVICE_UNAVAILABLE": 63, "BEARERCAPABILITY_NOTIMPL": 65, "CHAN_NOT_IMPLEMENTED": 66,
    "FACILITY_NOT_IMPLEMENTED": 69, "SERVICE_NOT_IMPLEMENTED": 79, "INVALID_CALL_REFERENCE": 81,
    "INCOMPATIBLE_DESTINATION": 88, "INVALID_MSG_UNSPECIFIED": 95, "MANDATORY_IE_MISSING": 96,
    "MESSAGE_TYPE_NONEXIST": 97, "WRONG_MESSAGE": 98, "IE_NONEXIST": 99,
    "INVALID_IE_CONTENTS": 100, "WRONG_CALL_STATE": 101, "RECOVERY_ON_TIMER_EXPIRE": 102,
    "MANDATORY_IE_LENGTH_ERROR": 103, "PROTOCOL_ERROR": 111, "INTERWORKING": 127,
    "ORIGINATOR_CANCEL": 487, "CRASH": 700, "SYSTEM_SHUTDOWN": 701, "LOSE_RACE": 502,
    "MANAGER_REQUEST": 503, "BLIND_TRANSFER": 600, "ATTENDED_TRANSFER": 601,
    "ALLOTTED_TIMEOUT": 602, "USER_CHALLENGE": 603, "MEDIA_TIMEOUT": 604, "PICKED_OFF": 605,
    "USER_NOT_REGISTERED": 606, "PROGRESS_TIMEOUT": 607, "GATEWAY_DOWN": 609,
}
_BY_CODE = {code: name for name, code in CAUSES.items()}


def parse_cause(text: str | None) -> str:
    """Like ``switch_channel_str2cause``: a name (any case) or a number; unknown -> NORMAL_CLEARING."""
    if not text:
        return "NORMAL_CLEARING"
    upper = text.upper()
    if upper in CAUSES and upper != "NONE":
        return upper
    if text.isdigit() and int(text) in _BY_CODE and int(text) != 0:
        return _BY_CODE[int(text)]
    return "NORMAL_CLEARING"


def q850(cause: str) -> int:
    """``switch_channel_cause_q850``: causes above INTERWORKING (127) report 16 (seen: SYSTEM_SHUTDOWN)."""
    code = CAUSES.get(cause, 16)
    return code if code <= 127 else 16
