"""Channel state of the simulated switch and the ``show channels`` / ``show calls`` output.

Row fields and their order are those of real ``show ... as json`` answers (fixtures
``api_replies.bin`` and ``plain_bridged.bin``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from esl_guard.simulator.templates import local_stamp
from esl_guard.simulator.wire import fs_url_encode

B_LEG_NAME = "sofia/external/9999@127.0.0.1:5090"
B_LEG_DEST = "9999"


@dataclass(slots=True)
class Channel:
    uuid: str
    leg: str  # "A" (inbound caller) or "B" (outbound leg created by bridge)
    account: str | None
    account_known: bool
    variable: str
    caller: str
    dest: str
    direction: str
    extra_vars: dict[str, str] | None
    port: int
    session_id: int
    created_us: int
    answered_us: int = 0
    hangup_us: int = 0
    other: str | None = None  # B: the A-leg from CREATE on; A: the B-leg once bridge() started
    bridged: bool = False  # A: CHANNEL_BRIDGE sent
    cause: str = ""
    static: dict[str, str] = field(default_factory=dict)
    caller_id: str | None = None  # Caller-Caller-ID-Number (None: the caller)
    ip: str = "127.0.0.1"         # Caller-Network-Addr, variable_sip_network_ip
    context: str = "public"       # Caller-Context

    @property
    def answered(self) -> bool:
        return self.answered_us != 0

    def kind(self) -> str:
        """Template family: A (plain inbound), R (ends unanswered), AB (bridged A), B."""
        if self.leg == "B":
            return "B"
        if self.other is not None:
            return "AB"
        return "A" if self.answered else "R"

    def visible_account(self) -> str | None:
        return self.account if self.account_known else None

    def name(self) -> str:
        return B_LEG_NAME if self.leg == "B" else f"sofia/external/{self.caller}@127.0.0.1:{self.port}"

    def build_static(self) -> None:
        """Per-leg template values that never change (already FreeSWITCH-encoded)."""
        self.static = {
            "dest": fs_url_encode(self.dest) or "_undef_",
            "direction": fs_url_encode(self.direction) or "_undef_",
            "from": fs_url_encode(self.caller) or "_undef_",
            "port": str(self.port),
            "session_id": str(self.session_id),
            "call_id": f"{self.session_id}-{self.port}%40127.0.0.1",
            "cid": fs_url_encode(self.caller if self.caller_id is None else self.caller_id)
            or "_undef_",
            "ip": fs_url_encode(self.ip) or "_undef_",
            "context": fs_url_encode(self.context) or "_undef_",
        }

    def info(self) -> dict[str, object]:
        return {
            "uuid": self.uuid, "leg": self.leg, "account": self.account,
            "account_known": self.account_known, "variable": self.variable,
            "answered": self.answered, "bridged": self.bridged, "dest": self.dest,
            "direction": self.direction, "caller": self.caller,
            "b_leg": self.other if self.leg == "A" else None,
            "a_leg": self.other if self.leg == "B" else None,
            "created_us": self.created_us,
        }


def channel_row(ch: Channel, host: str) -> dict[str, str]:
    """One ``show channels as json`` row (all values strings, field order as captured)."""
    b = ch.leg == "B"
    bridged = ch.other is not None and (b or ch.bridged)
    media = ch.answered
    acct = ch.account if (ch.account_known and ch.variable == "accountcode" and ch.account) else ""
    if b:
        application, app_data = "", ""
    elif ch.other is not None:
        application, app_data = "bridge", B_LEG_NAME
    else:
        application, app_data = "sleep", "600000"
    dest = B_LEG_DEST if b else ch.dest
    return {
        "uuid": ch.uuid, "direction": "outbound" if b else ch.direction,
        "created": local_stamp(ch.created_us), "created_epoch": str(ch.created_us // 1_000_000),
        "name": ch.name(), "state": "CS_EXCHANGE_MEDIA" if b else "CS_EXECUTE",
        "cid_name": ch.caller, "cid_num": ch.caller, "ip_addr": "127.0.0.1", "dest": dest,
        "application": application, "application_data": app_data, "dialplan": "XML",
        "context": "public", "read_codec": "PCMU" if media else "",
        "read_rate": "8000" if media else "", "read_bit_rate": "64000" if media else "",
        "write_codec": "PCMU" if media else "", "write_rate": "8000" if media else "",
        "write_bit_rate": "64000" if media else "", "secure": "", "hostname": host,
        "presence_id": "", "presence_data": "", "accountcode": acct,
        "callstate": "ACTIVE" if ch.answered else "RINGING",
        "callee_name": "Outbound Call" if bridged else "",
        "callee_num": B_LEG_DEST if bridged else "",
        "callee_direction": "SEND" if bridged else "",
        "call_uuid": (ch.other or "") if b else (ch.uuid if bridged else ""),
        "sent_callee_name": (ch.caller if b else "Outbound Call") if bridged else "",
        "sent_callee_num": (ch.caller if b else B_LEG_DEST) if bridged else "",
        "initial_cid_name": ch.caller, "initial_cid_num": ch.caller,
        "initial_ip_addr": "127.0.0.1", "initial_dest": dest, "initial_dialplan": "XML",
        "initial_context": "public",
    }


_CALL_A_FIELDS = ("uuid", "direction", "created", "created_epoch", "name", "state", "cid_name",
                  "cid_num", "ip_addr", "dest", "presence_id", "presence_data", "accountcode",
                  "callstate", "callee_name", "callee_num", "callee_direction", "call_uuid",
                  "hostname", "sent_callee_name", "sent_callee_num")
_CALL_B_FIELDS = ("uuid", "direction", "created", "created_epoch", "name", "state", "cid_name",
                  "cid_num", "ip_addr", "dest", "presence_id", "presence_data", "accountcode",
                  "callstate", "callee_name", "callee_num", "callee_direction",
                  "sent_callee_name", "sent_callee_num")


def call_row(a: Channel, b: Channel | None, host: str) -> dict[str, str]:
    """One ``show calls as json`` row: the A-leg unprefixed, its B-leg with ``b_`` prefixes."""
    arow = channel_row(a, host)
    row = {k: arow[k] for k in _CALL_A_FIELDS}
    brow = channel_row(b, host) if b is not None else None
    for k in _CALL_B_FIELDS:
        row["b_" + k] = brow[k] if brow is not None else ""
    row["call_created_epoch"] = arow["created_epoch"] if brow is not None else ""
    return row


def show_json(rows: list[dict[str, str]]) -> bytes:
    if not rows:
        return b'{"row_count": 0}\n'
    payload = {"row_count": len(rows), "rows": rows}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def show_count(n: int) -> bytes:
    return b"\n%d total.\n" % n


def show_csv(rows: list[dict[str, str]], columns: tuple[str, ...]) -> bytes:
    if not rows:
        return b"\n0 total.\n"
    lines = [",".join(columns)]
    lines += [",".join(r[c] for c in columns) for r in rows]
    return ("\n".join(lines) + f"\n\n{len(rows)} total.\n").encode()


CHANNEL_COLUMNS = tuple(channel_row(Channel("", "A", None, False, "accountcode", "", "", "inbound",
                                            None, 0, 0, 0), "").keys())
