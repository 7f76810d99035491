"""`esl-guard example dialplan -c CONF` (issue 12): the class extension that sets
${esl_guard_class} (longest prefix last, so it wins), the conf's exempt numbers as the
emergency numbers, and the integration configuration's copy kept in step."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from esl_guard.config import load_config
from esl_guard.dialplan import class_extension, for_conf
from esl_guard.policy import Destinations
from esl_guard.policy.destinations import DestinationClass
from tests.harness import cli

ROOT = Path(__file__).resolve().parent.parent
BASE = "[freeswitch]\nhost = 127.0.0.1\n[database]\nurl = sqlite:////tmp/unused.db\n"


def classes(**prefixes: str) -> Destinations:
    return Destinations([DestinationClass(name, tuple(p.split()), exempt=name == "sos")
                         for name, p in prefixes.items()])


def set_order(ext: str) -> list[tuple[str, str]]:
    """(regex alternatives, class) in the order FreeSWITCH tries them."""
    return re.findall(r'expression="\^\\\+\?\(([0-9|]+)\)" break="never">\n\s+<action '
                      r'application="set" data="esl_guard_class=([a-z]+)"', ext)


def test_the_longest_prefix_is_set_last_and_exempt_classes_are_left_out() -> None:
    ext = class_extension(classes(intl="00 0044", premium="1900 44871 0044871", sos="112"))
    assert set_order(ext) == [("00", "intl"), ("0044", "intl"), ("1900", "premium"),
                              ("44871", "premium"), ("0044871", "premium")]
    assert class_extension(classes()) == "" and class_extension(classes(sos="112")) == ""


def test_the_snippet_for_a_conf_has_its_classes_and_its_emergency_numbers() -> None:
    snippet = (ROOT / "conf" / "dialplan-locked-accounts.xml").read_text()
    text = for_conf(snippet, classes(premium="1900", sos="112 15"))
    assert text.index("esl_guard_destination_class") < text.index("esl_guard_locked_account")
    assert 'expression="^\\+?(112|15)$" break="on-true"' in text
    assert for_conf(snippet, classes()) == snippet


def test_example_dialplan_with_a_conf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(BASE + "[destination:premium]\nprefixes = 1900\n")
    assert cli(["example", "dialplan", "-c", str(conf)]) == 0
    assert 'data="esl_guard_class=premium"' in capsys.readouterr().out
    assert cli(["example", "conf", "-c", str(conf)]) == 2
    assert "goes with `example dialplan` only" in capsys.readouterr().err


def test_the_integration_configuration_s_classes_are_generated(tmp_path: Path) -> None:
    """public/00_esl_guard_classes.xml is what the generator makes of the classes of the
    integration tests' confs (one FreeSWITCH serves every test module)."""
    text = ""
    for module, name in (("test_freeswitch_destinations.py", "CLASSES"),
                         ("test_admission_gate.py", "GATE_CLASSES")):
        source = (ROOT / "tests" / "integration" / module).read_text()
        match = re.search(name + r' = """(.*?)"""', source, re.S)
        assert match is not None, module
        text += match.group(1)
    path = tmp_path / "c.conf"
    path.write_text(BASE + text)
    ext = class_extension(load_config(path).destinations)
    shipped = (ROOT / "tests" / "integration" / "freeswitch" / "dialplan" / "public" /
               "00_esl_guard_classes.xml").read_text()
    assert ext and ext in shipped
