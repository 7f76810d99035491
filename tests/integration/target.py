"""Which FreeSWITCH the integration tests talk to, from the environment.

    ESL_GUARD_FS=host:port[:password]   event socket (password default ClueCon)
    ESL_GUARD_SIP=host:port             SIP profile without authentication (`external`, 5080)
    ESL_GUARD_SIP_AUTH=host:port        SIP profile with digest auth (`internal`); default: the
                                        host of ESL_GUARD_SIP, port 5060
    ESL_GUARD_SIP_PASSWORD=secret       password of the directory users 1001-1003; default the
                                        default_password of freeswitch/vars.xml
    ESL_GUARD_SIPP_IP=address           local address sipp puts in Via/Contact/SDP; default the
                                        address this host uses to reach ESL_GUARD_SIP
    ESL_GUARD_COMPOSE=file              compose file of a Docker FreeSWITCH (set by `make
                                        integration`): the restart test runs `docker compose -f
                                        file kill freeswitch`, then `... start freeswitch`
    ESL_GUARD_FS_RESTART='command'      or any shell command that restarts FreeSWITCH

    ESL_GUARD_FS_BIN=/path/to/freeswitch instead of ESL_GUARD_FS: the suite starts its own
                                        FreeSWITCH with freeswitch/ as its configuration
                                        (fsproc.py), on 127.0.0.1 (ESL 8021, SIP 5080/5060)
    ESL_GUARD_FS_MODDIR=dir             its module directory, when not the binary's default

Nothing here touches the network at import time, so collecting the tests never fails.
"""
from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SKIP_REASON = ("no FreeSWITCH: set ESL_GUARD_FS_BIN=/path/to/freeswitch (the suite starts it), "
               "or ESL_GUARD_FS=host:port[:password] and ESL_GUARD_SIP=host:port, "
               "or run `make integration` with Docker")
DEFAULT_ESL_PASSWORD = "ClueCon"
DEFAULT_SIP_PASSWORD = "esl-guard-test"  # freeswitch/vars.xml default_password
HERE = Path(__file__).resolve().parent


class TargetError(ValueError):
    """A variable is set but unusable: one line saying which and why."""


@dataclass(frozen=True)
class Target:
    esl_host: str
    esl_port: int
    esl_password: str
    sip_host: str
    sip_port: int
    sip_auth_host: str
    sip_auth_port: int
    sip_password: str
    sipp_ip: str
    restart_command: tuple[str, ...] | None
    restart_description: str | None
    fs_bin: str | None = None       # ESL_GUARD_FS_BIN: the suite starts and restarts it itself
    fs_moddir: str | None = None

    def __str__(self) -> str:
        return (f"FreeSWITCH ESL {self.esl_host}:{self.esl_port}, SIP {self.sip_host}:"
                f"{self.sip_port} (digest {self.sip_auth_host}:{self.sip_auth_port}), "
                f"sipp from {self.sipp_ip}")


def _host_port(name: str, text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"{name}={text!r}: expected host:port")
    return host, int(port)


def _local_ip_towards(host: str, port: int) -> str:
    """The source address this machine uses to reach host:port (no packet is sent)."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        raise TargetError(f"cannot resolve {host}: {exc}") from None
    addr = str(infos[0][4][0])
    if addr.startswith("127."):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((addr, port))
            return s.getsockname()[0]
        except OSError as exc:
            raise TargetError(f"no route to {host}:{port}: {exc}") from None


def target_from_env(environ: Mapping[str, str] | None = None) -> Target | None:
    """The configured target; None when neither ESL_GUARD_FS nor ESL_GUARD_FS_BIN is set (the
    suite is skipped)."""
    env = os.environ if environ is None else environ
    fs = env.get("ESL_GUARD_FS", "").strip()
    fs_bin = env.get("ESL_GUARD_FS_BIN", "").strip()
    if fs_bin:
        if fs:
            raise TargetError("ESL_GUARD_FS and ESL_GUARD_FS_BIN are both set: ESL_GUARD_FS names "
                              "a running FreeSWITCH, ESL_GUARD_FS_BIN one the suite starts")
        # the addresses of freeswitch/vars.xml, which the suite's own FreeSWITCH runs with
        return Target("127.0.0.1", 8021, DEFAULT_ESL_PASSWORD, "127.0.0.1", 5080, "127.0.0.1",
                      5060, DEFAULT_SIP_PASSWORD, "127.0.0.1", None,
                      f"the suite's own FreeSWITCH ({fs_bin}): SIGKILL, then start again",
                      fs_bin, env.get("ESL_GUARD_FS_MODDIR", "").strip() or None)
    if not fs:
        return None
    parts = fs.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1].isdigit():
        raise TargetError(f"ESL_GUARD_FS={fs!r}: expected host:port[:password]")
    esl_host, esl_port = parts[0], int(parts[1])
    esl_password = parts[2] if len(parts) == 3 and parts[2] else DEFAULT_ESL_PASSWORD
    sip = env.get("ESL_GUARD_SIP", "").strip()
    if not sip:
        raise TargetError("ESL_GUARD_FS is set but ESL_GUARD_SIP is not: expected host:port of "
                          "the unauthenticated SIP profile (5080 in tests/integration/freeswitch)")
    sip_host, sip_port = _host_port("ESL_GUARD_SIP", sip)
    auth = env.get("ESL_GUARD_SIP_AUTH", "").strip()
    auth_host, auth_port = _host_port("ESL_GUARD_SIP_AUTH", auth) if auth else (sip_host, 5060)
    sipp_ip = env.get("ESL_GUARD_SIPP_IP", "").strip() or _local_ip_towards(sip_host, sip_port)
    restart: tuple[str, ...] | None = None
    described: str | None = None
    if env.get("ESL_GUARD_FS_RESTART", "").strip():
        described = env["ESL_GUARD_FS_RESTART"].strip()
        restart = ("sh", "-c", described)
    elif env.get("ESL_GUARD_COMPOSE", "").strip():
        # kill (SIGKILL), not restart (SIGTERM): the calls end without esl-guard seeing it
        compose = shlex.quote(env["ESL_GUARD_COMPOSE"].strip())
        described = (f"docker compose -f {compose} kill freeswitch && "
                     f"docker compose -f {compose} start freeswitch")
        restart = ("sh", "-c", described)
    return Target(esl_host, esl_port, esl_password, sip_host, sip_port, auth_host, auth_port,
                  env.get("ESL_GUARD_SIP_PASSWORD", "") or DEFAULT_SIP_PASSWORD, sipp_ip,
                  restart, described)
