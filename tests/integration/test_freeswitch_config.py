"""The FreeSWITCH configuration of the integration tests, checked without a FreeSWITCH: every
file is well-formed XML, the whole tree assembles the way FreeSWITCH's preprocessor assembles it
(fsconfig.py), and the settings the tests rely on are what they expect.  Fast; runs everywhere."""
from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.integration.fsconfig import Assembled, assemble, params
from tests.integration.sipprun import MEDIA_PORTS, SCENARIOS
from tests.integration.target import DEFAULT_ESL_PASSWORD, DEFAULT_SIP_PASSWORD

HERE = Path(__file__).resolve().parent
CONF = HERE / "freeswitch"
REPO = HERE.parents[1]
SHIPPED_LOCK_CHECK = REPO / "conf" / "dialplan-locked-accounts.xml"
MODULES = {"mod_console", "mod_logfile", "mod_event_socket", "mod_sofia", "mod_loopback",
           "mod_commands",
           "mod_dptools", "mod_hash", "mod_dialplan_xml", "mod_sndfile", "mod_native_file",
           "mod_tone_stream"}


@pytest.fixture(scope="module")
def assembled() -> Assembled:
    return assemble(CONF / "freeswitch.xml")


@pytest.fixture(scope="module")
def root(assembled: Assembled) -> ET.Element:
    assert not assembled.errors, "\n".join(assembled.errors)
    return assembled.root()


def section(root: ET.Element, name: str) -> ET.Element:
    found = root.find(f"./section[@name='{name}']")
    assert found is not None, f"no <section name={name!r}>"
    return found


def configuration(root: ET.Element, name: str) -> ET.Element:
    found = section(root, "configuration").find(f"./configuration[@name='{name}']")
    assert found is not None, f"no <configuration name={name!r}>"
    return found


def canonical(element: ET.Element) -> str:
    return ET.canonicalize(ET.tostring(element), strip_text=True)


@pytest.mark.parametrize("path", sorted(CONF.rglob("*.xml")) + sorted(SCENARIOS.rglob("*.xml")),
                         ids=lambda p: str(p.relative_to(HERE)))
def test_every_file_is_well_formed_xml(path: Path) -> None:
    ET.parse(path)


def test_the_tree_assembles_like_freeswitch_does(assembled: Assembled, root: ET.Element) -> None:
    assert root.tag == "document" and root.get("type") == "freeswitch/xml"
    included = {p.resolve() for p in assembled.files}
    assert included == {p.resolve() for p in CONF.rglob("*.xml")}, "files never included"
    assert {s.get("name") for s in root.findall("./section")} == \
        {"configuration", "dialplan", "directory"}


def test_modules_are_those_of_the_captures(root: ET.Element) -> None:
    loads = [m.get("module") for m in configuration(root, "modules.conf").iter("load")]
    assert len(loads) == len(set(loads)) and set(loads) == MODULES, loads
    # every module whose configuration the tests rely on has its file
    for name in ("switch.conf", "event_socket.conf", "acl.conf", "sofia.conf", "console.conf",
                 "logfile.conf", "hash.conf"):
        configuration(root, name)


def test_event_socket_listens_for_the_tests_and_its_acl_allows_loopback(root: ET.Element) -> None:
    es = params(configuration(root, "event_socket.conf"))
    assert es["listen-ip"] == "127.0.0.1" and es["listen-port"] == "8021"
    assert es["password"] == DEFAULT_ESL_PASSWORD
    acl = configuration(root, "acl.conf").find(
        f"./network-lists/list[@name='{es['apply-inbound-acl']}']")
    assert acl is not None, f"apply-inbound-acl {es['apply-inbound-acl']!r} is not a list"
    assert acl.get("default") == "deny"
    allowed = [ipaddress.ip_network(n.get("cidr", "")) for n in acl.findall("node")
               if n.get("type") == "allow"]
    for addr in ("127.0.0.1", "172.17.0.1", "192.168.1.10", "10.1.2.3"):  # loopback, bridges
        assert any(ipaddress.ip_address(addr) in net for net in allowed), addr
    assert not any(ipaddress.ip_address("8.8.8.8") in net for net in allowed)


def test_rtp_range_is_small_and_apart_from_sipp(root: ET.Element) -> None:
    core = params(configuration(root, "switch.conf"))
    start, end = int(core["rtp-start-port"]), int(core["rtp-end-port"])
    assert 1024 < start < end and end - start < 200
    lo, hi = MEDIA_PORTS
    assert hi <= start or lo > end, "sipp's media ports must lie outside FreeSWITCH's RTP range"


def test_sip_profiles(root: ET.Element) -> None:
    profiles = {p.get("name"): params(p) for p in
                configuration(root, "sofia.conf").findall("./profiles/profile")}
    assert set(profiles) == {"external", "internal"}
    ext, internal = profiles["external"], profiles["internal"]
    assert (ext["sip-port"], ext["auth-calls"], ext["context"]) == ("5080", "false", "public")
    assert (internal["sip-port"], internal["auth-calls"], internal["context"]) == \
        ("5060", "true", "default")
    for p in (ext, internal):
        assert p["sip-ip"] == p["rtp-ip"] == "127.0.0.1" and p["dialplan"] == "XML"
        assert p["inbound-codec-prefs"].split(",")[0] == "PCMU"  # what sipp offers
    domains = [d.get("name") for d in section(root, "directory").findall("./domain")]
    assert domains == [internal["force-register-domain"]]


def test_directory_users_have_a_password_and_an_accountcode_each(root: ET.Element) -> None:
    users = section(root, "directory").findall("./domain/groups/group/users/user")
    assert [u.get("id") for u in users] == ["1001", "1002", "1003"]
    codes = []
    for user in users:
        assert params(user)["password"] == DEFAULT_SIP_PASSWORD
        codes.append(params(user, "variable")["accountcode"])
    assert codes == ["acct1001", "acct1002", "acct1003"]


def extensions(root: ET.Element, context: str) -> list[ET.Element]:
    ctx = section(root, "dialplan").find(f"./context[@name='{context}']")
    assert ctx is not None, f"no dialplan context {context!r}"
    return ctx.findall("./extension")


def test_locked_account_check_is_the_shipped_one_and_comes_first(root: ET.Element) -> None:
    shipped = ET.parse(SHIPPED_LOCK_CHECK).getroot().findall("extension")
    assert [e.get("name") for e in shipped][:2] == ["esl_guard_locked_account",
                                                    "esl_guard_admission_account"]
    for context in ("public", "default"):
        exts = extensions(root, context)
        names = [e.get("name") for e in exts]
        at = names.index(shipped[0].get("name"))
        assert [canonical(e) for e in exts[at:at + len(shipped)]] == [
            canonical(e) for e in shipped], (
            f"context {context}: the esl-guard extensions differ from "
            f"conf/dialplan-locked-accounts.xml: copy that file to "
            f"tests/integration/freeswitch/dialplan/{context}/01_esl_guard_locked.xml")
        # nothing before them answers a call
        for earlier in exts[:at]:
            assert earlier.get("continue") == "true", earlier.get("name")
            apps = {a.get("application") for a in earlier.iter("action")}
            assert apps <= {"set"}, (context, earlier.get("name"), apps)


def test_public_sets_the_account_from_x_account_inline_before_the_check(root: ET.Element) -> None:
    first = extensions(root, "public")[0]
    cond = first.find("condition")
    assert cond is not None and cond.get("field") == "${sip_h_X-Account}"
    action = cond.find("action")
    assert action is not None
    assert (action.get("application"), action.get("data"), action.get("inline")) == \
        ("set", "accountcode=${sip_h_X-Account}", "true")
    # the account codes it takes are those esl-guard accepts (esl_guard.safety)
    pattern = re.compile(cond.get("expression", ""))
    assert pattern.search("acct-1a2b3c") and pattern.search("1001") and \
        not pattern.search("a b") and not pattern.search("-x") and not pattern.search("x" * 65)


@pytest.mark.parametrize("context", ["public", "default"])
def test_9001_answers_and_holds_until_the_caller_hangs_up(root: ET.Element, context: str) -> None:
    for ext in extensions(root, context):
        cond = ext.find("condition")
        if cond is not None and cond.get("expression") == "^9001$":
            apps = [(a.get("application"), a.get("data")) for a in cond.findall("action")]
            assert apps[:2] == [("answer", None), ("playback", "silence_stream://-1")], apps
            return
    pytest.fail(f"no 9001 in context {context}")


def test_compose_file_builds_the_dockerfile_and_mounts_this_config() -> None:
    text = (HERE / "docker-compose.yml").read_text()
    assert re.search(r"^    build:\n      context: \.\n      dockerfile: Dockerfile$", text, re.M)
    assert re.search(r"^    image: esl-guard-it-freeswitch:1\.10\.12$", text, re.M), \
        "the image is the one built here, never pulled"
    assert re.search(r"^    network_mode: host$", text, re.M)
    assert re.search(r"^      - \./freeswitch:/etc/freeswitch:ro$", text, re.M)
    try:
        import yaml  # not a dependency: a full parse only where PyYAML happens to be installed
    except ImportError:
        return
    fs = yaml.safe_load(text)["services"]["freeswitch"]
    assert fs["network_mode"] == "host" and "./freeswitch:/etc/freeswitch:ro" in fs["volumes"]


# The build of the captures (tests/fixtures/esl/FIXTURES-README.md) and of ../shared/freeswitch
SOURCE_COMMITS = {"FREESWITCH_COMMIT": "a88d069d6ffb74df797bcaf001f7e63181c07a09",
                  "SOFIA_SIP_COMMIT": "6198851a610b7889c17e2d98fb84617bc1dd7aec",
                  "SPANDSP_COMMIT": "0d2e6ac65e0e8f53d652665a743015a88bf048d4"}
BUILT_MODULES = MODULES | {"mod_db", "mod_expr"}


def test_dockerfile_builds_the_captures_freeswitch_from_source() -> None:
    """No third-party image, the source commits of the captures' build, its 14 modules (every
    module the configuration loads among them), and every path on FreeSWITCH's command line."""
    text = (HERE / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["debian:12", "debian:12-slim"]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    assert {k: args.get(k) for k in SOURCE_COMMITS} == SOURCE_COMMITS
    built = set(re.findall(r"^      \w+/(mod_\w+) \\$", text, re.M))
    assert built == BUILT_MODULES, built ^ BUILT_MODULES
    cmd = text[text.index("CMD ["):]
    for option in ("-conf", "-mod", "-log", "-run", "-base", "-db", "-storage", "-cache",
                   "-temp", "-sounds", "-recordings", "-certs", "-scripts", "-grammar",
                   "-htdocs", "-nonat", "-nc", "-nf"):
        assert f'"{option}"' in cmd, option
    assert '"-conf", "/etc/freeswitch"' in cmd
