"""Regenerate ``_templates_data.py`` from the real FreeSWITCH captures (developer tool).

    python -m esl_guard.simulator._gen_templates tests/fixtures/esl

Each template is one real event from the captures (FreeSWITCH 1.10.12, sipp calls; see
``tests/fixtures/esl/FIXTURES-README.md``), with the values that differ per call replaced by
``{placeholders}`` (``str.format_map`` fields; the FreeSWITCH encoder turns every ``{``/``}`` of a
value into ``%7B``/``%7D``, so a literal brace cannot occur). Header names, their order and all
other values stay exactly as captured.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from esl_guard.simulator.wire import iter_frames, parse_plain_body

# (template name, fixture file, Event-Sequence, role). Role A: unbridged inbound leg, R: never
# answered (rejected) inbound leg, AB: inbound A-leg of a bridged call, B: its outbound B-leg.
Source = dict[str, "str | None"]
UNBRIDGED: Source = {"file": "plain_calls.bin", "a": "9abf94b9-5db0-4571-beef-763e6dc5c1a9",
                     "b": None, "account": "acct1", "dest": "9001", "port": "15100"}
REJECTED: Source = {"file": "plain_calls.bin", "a": "0d8524e7-0dea-4bba-9d56-60eac1b6e233",
                    "b": None, "account": "acct3", "dest": "9004", "port": "15500"}
BRIDGED: Source = {"file": "plain_bridged.bin", "a": "2d85a87e-9e17-4d8a-a0f6-ac2618f2c237",
                   "b": "332e8e26-2a93-427d-9d9c-9b7dab2aaf6e", "account": "acct1",
                   "dest": "9005", "port": "15100"}

SOURCES: list[tuple[str, Source, int, str]] = [
    ("A_CREATE", UNBRIDGED, 721, "A"),
    ("A_ANSWER", UNBRIDGED, 758, "A"),
    ("A_HANGUP", UNBRIDGED, 1063, "A"),
    ("A_HANGUP_COMPLETE", UNBRIDGED, 1068, "A"),
    ("A_DESTROY", UNBRIDGED, 1069, "A"),
    ("R_HANGUP", REJECTED, 923, "A"),
    ("R_HANGUP_COMPLETE", REJECTED, 928, "A"),
    ("R_DESTROY", REJECTED, 929, "A"),
    ("B_CREATE", BRIDGED, 495, "B"),
    ("B_ANSWER", BRIDGED, 504, "B"),
    ("AB_ANSWER", BRIDGED, 510, "A"),
    ("AB_BRIDGE", BRIDGED, 512, "A"),
    ("AB_HANGUP", BRIDGED, 650, "A"),
    ("B_HANGUP", BRIDGED, 651, "B"),
    ("B_HANGUP_COMPLETE", BRIDGED, 655, "B"),
    ("AB_UNBRIDGE", BRIDGED, 656, "A"),
    ("B_DESTROY", BRIDGED, 658, "B"),
    ("AB_HANGUP_COMPLETE", BRIDGED, 663, "A"),
    ("AB_DESTROY", BRIDGED, 664, "A"),
]
SIMPLE = [("HEARTBEAT", "plain_load.bin", 13016), ("SHUTDOWN", "shutdown_plain_all.bin", 1852),
          ("BACKGROUND_JOB", "api_replies.bin", 1760)]

COMMON = {
    "Core-UUID": "{core}", "FreeSWITCH-Hostname": "{host}", "FreeSWITCH-Switchname": "{host}",
    "Event-Date-Local": "{date_local}", "Event-Date-GMT": "{date_gmt}",
    "Event-Date-Timestamp": "{ts}", "Event-Sequence": "{seq}",
}
TIMES = {
    "{created_us}": ["Caller-Profile-Created-Time", "Caller-Channel-Created-Time",
                     "variable_sip_invite_stamp", "variable_start_uepoch",
                     "variable_profile_start_uepoch", "Caller-Channel-Progress-Time",
                     "variable_progress_uepoch", "Other-Leg-Profile-Created-Time",
                     "Other-Leg-Channel-Created-Time", "Other-Leg-Channel-Progress-Time"],
    "{created_s}": ["variable_start_epoch", "variable_profile_start_epoch",
                    "variable_progress_epoch"],
    "{created_stamp}": ["variable_start_stamp", "variable_profile_start_stamp",
                        "variable_progress_stamp"],
    "{answered_us}": ["Caller-Channel-Answered-Time", "Caller-Channel-Progress-Media-Time",
                      "Caller-Channel-Bridged-Time", "variable_answer_uepoch",
                      "variable_progress_media_uepoch", "variable_bridge_uepoch",
                      "Other-Leg-Channel-Answered-Time", "Other-Leg-Channel-Progress-Media-Time",
                      "Other-Leg-Channel-Bridged-Time"],
    "{answered_s}": ["variable_answer_epoch", "variable_progress_media_epoch",
                     "variable_bridge_epoch"],
    "{answered_stamp}": ["variable_answer_stamp", "variable_progress_media_stamp",
                         "variable_bridge_stamp"],
    "{hangup_us}": ["Caller-Channel-Hangup-Time", "variable_end_uepoch",
                    "Other-Leg-Channel-Hangup-Time"],
    "{hangup_s}": ["variable_end_epoch"],
    "{hangup_stamp}": ["variable_end_stamp"],
    "{dur_s}": ["variable_duration"], "{dur_ms}": ["variable_mduration"],
    "{dur_us}": ["variable_uduration"],
    "{bill_s}": ["variable_billsec", "variable_flow_billsec"],
    "{bill_ms}": ["variable_billmsec", "variable_flow_billmsec"],
    "{bill_us}": ["variable_billusec", "variable_flow_billusec"],
    "{ans_s}": ["variable_answersec", "variable_waitsec", "variable_progress_mediasec",
                "variable_progresssec"],
    "{ans_ms}": ["variable_answermsec", "variable_waitmsec", "variable_progress_mediamsec",
                 "variable_progressmsec"],
    "{ans_us}": ["variable_answerusec", "variable_waitusec", "variable_progress_mediausec",
                 "variable_progressusec"],
}
BY_KEY = {key: field for field, keys in TIMES.items() for key in keys}
BY_KEY.update({
    "variable_RFC2822_DATE": "{rfc2822}", "variable_sip_call_id": "{call_id}",
    "variable_session_id": "{session_id}", "Hangup-Cause": "{cause}",
    "variable_hangup_cause": "{cause}", "variable_hangup_cause_q850": "{q850}",
    "variable_bridge_hangup_cause": "{other_cause}",
    "variable_last_bridge_hangup_cause": "{other_cause}",
})
A_ONLY = {k: "{direction}" for k in ("Call-Direction", "Presence-Call-Direction",
                                        "Caller-Direction", "Caller-Logical-Direction",
                                        "variable_direction")}
A_ONLY["variable_sip_hangup_disposition"] = "{disposition}"
# The caller's facts the detectors read (issue 13): caller ID, source address, context.
A_ONLY.update({"Caller-Caller-ID-Number": "{cid}", "Caller-Network-Addr": "{ip}",
               "variable_sip_network_ip": "{ip}", "variable_sip_received_ip": "{ip}",
               "Caller-Context": "{context}"})
B_ONLY = {"Other-Leg-Direction": "{direction}"}
DEST_KEYS = {"Caller-Destination-Number", "variable_sip_req_user", "variable_sip_req_uri",
             "variable_sip_to_user", "variable_sip_to_uri", "variable_sip_full_to",
             "variable_destination_number", "Other-Leg-Destination-Number"}
HEARTBEAT = {"Up-Time": "{uptime}", "Uptime-msec": "{uptime_ms}", "Session-Count": "{sessions}",
             "Session-Since-Startup": "{since_startup}", "Session-Peak-Max": "{peak}",
             "Session-Peak-FiveMin": "{peak}"}
JOB = {"Job-UUID": "{job_uuid}", "Job-Command": "{job_command}"}


def _events(path: Path) -> dict[int, list[tuple[str, str]]]:
    out: dict[int, list[tuple[str, str]]] = {}
    for headers, body in iter_frames(path.read_bytes()):
        if headers.get("Content-Type") == "text/event-plain":
            pairs = parse_plain_body(body)
            seq = int(dict(pairs)["Event-Sequence"])
            out[seq] = pairs
    return out


def _channel_template(pairs: list[tuple[str, str]], src: Source, role: str,
                      ) -> list[str]:
    a_uuid, b_uuid = src["a"], src["b"]
    account, dest, port = str(src["account"]), str(src["dest"]), str(src["port"])
    port_re = re.compile(rf"(?<![0-9]){port}(?![0-9])")
    lines: list[str] = []
    for key, value in pairs:
        assert "{" not in value and "}" not in value, (key, value)
        if key == "variable_accountcode":
            lines.append("{vars}")
            continue
        if key in COMMON:
            value = COMMON[key]
        elif key in BY_KEY and value != "0":
            value = BY_KEY[key]
        elif role == "A" and key in A_ONLY:
            value = A_ONLY[key]
        elif role == "B" and key in B_ONLY:
            value = B_ONLY[key]
        else:
            if key in DEST_KEYS:
                value = value.replace(dest, "{dest}")
            value = value.replace(account, "{from}")
            if role == "A" or key.startswith("Other-Leg") or "bridge_channel" in key:
                value = port_re.sub("{port}", value)
            if a_uuid and len(a_uuid) == 36:
                value = value.replace(a_uuid, "{a}")
            if b_uuid:
                value = value.replace(b_uuid, "{b}")
        lines.append(f"{key}: {value}")
    if "{vars}" not in lines:
        at = next(i for i, line in enumerate(lines) if line.startswith("variable_sip_h_X-Account"))
        lines.insert(at + 1, "{vars}")
    assert lines.count("{vars}") == 1
    return lines


def _simple_template(pairs: list[tuple[str, str]], name: str) -> list[str]:
    lines: list[str] = []
    for key, value in pairs:
        if key in COMMON:
            value = COMMON[key]
        elif name == "HEARTBEAT" and key in HEARTBEAT:
            value = HEARTBEAT[key]
        elif name == "BACKGROUND_JOB":
            if key == "Job-Command-Arg":
                lines.append("{job_arg}")
                continue
            if key == "Content-Length":
                break  # the job result (inner Content-Length + body) is appended by the renderer
            value = JOB.get(key, value)
        lines.append(f"{key}: {value}")
    return lines


def _check_leftovers(name: str, lines: list[str], src: Source) -> None:
    for line in lines:
        if line.startswith(("variable_switch_r_sdp", "variable_rtp_local_sdp_str",
                            "variable_sip_full_via")):
            continue
        probes = ["17956", "2026-11-25", "Nov%202026", str(src["account"])]
        probes += [u for u in (src["a"], src["b"]) if u]
        if any(p in line for p in probes):
            print(f"  leftover in {name}: {line[:120]}", file=sys.stderr)


def generate(fixtures: Path) -> dict[str, str]:
    """Template name -> the text of its ``data/NAME.txt`` file: a ``# source`` comment line,
    then the template's lines."""
    cache: dict[str, dict[int, list[tuple[str, str]]]] = {}
    entries: list[tuple[str, str, int, list[str]]] = []
    for name, src, seq, role in SOURCES:
        file = str(src["file"])
        events = cache.setdefault(file, _events(fixtures / file))
        lines = _channel_template(events[seq], src, role)
        _check_leftovers(name, lines, src)
        entries.append((name, file, seq, lines))
    for name, file, seq in SIMPLE:
        events = cache.setdefault(file, _events(fixtures / file))
        entries.append((name, file, seq, _simple_template(events[seq], name)))
    return {name: "\n".join([f"# {file}, Event-Sequence {seq}", *lines]) + "\n"
            for name, file, seq, lines in entries}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    fixtures = Path(args[0] if args else "tests/fixtures/esl")
    target = Path(__file__).with_name("data")
    target.mkdir(exist_ok=True)
    for name, text in generate(fixtures).items():
        (target / f"{name}.txt").write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
