"""Assemble freeswitch/freeswitch.xml the way FreeSWITCH's preprocessor does, so the test
configuration can be checked without a FreeSWITCH.

Mirrors preprocess() and expand_vars() of src/switch_xml.c (1.10), line by line:
  * `$${name}` is replaced by the preprocessor variable (an unknown one by nothing: recorded
    here as an error, FreeSWITCH says nothing);
  * a line containing `<include>`, `</include>` or `<?` is dropped whole;
  * a line naming the preprocessor keyword (case-insensitive) is a directive when `<` precedes
    the keyword, and is dropped otherwise, even inside a comment;
  * `cmd="set" data="name=value"` sets a variable, `cmd="include" data="glob"` includes every
    match, relative to the directory of the including file, in glob (name) order; a glob that
    matches nothing makes FreeSWITCH try to open the pattern itself (an error here).
"""
from __future__ import annotations

import glob
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

KEYWORD = "x-pre-process"
_ATTR = re.compile(r'(cmd|data)\s*=\s*"([^"]*)"', re.IGNORECASE)
_VAR = re.compile(r"\$\$\{([^}]*)\}")


@dataclass
class Assembled:
    text: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def root(self) -> ET.Element:
        return ET.fromstring(self.text)


def assemble(main: Path) -> Assembled:
    out = Assembled()
    chunks: list[str] = []

    def expand(line: str, where: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in out.variables:
                out.errors.append(f"{where}: $${{{name}}} is not set (FreeSWITCH expands it to "
                                  "nothing)")
                return ""
            return out.variables[name]
        return _VAR.sub(sub, line)

    def process(path: Path, depth: int) -> None:
        if depth > 100:
            out.errors.append(f"{path}: include recursion")
            return
        out.files.append(path)
        for number, raw in enumerate(path.read_text().splitlines(keepends=True), 1):
            where = f"{path}:{number}"
            line = expand(raw, where)
            if "<include>" in raw or "</include>" in raw or "<?" in raw:
                continue
            at = line.lower().find(KEYWORD)
            if at >= 0:
                if at == 0 or line[at - 1] != "<":
                    out.errors.append(f"{where}: FreeSWITCH drops this line (it names the "
                                      "preprocessor keyword outside a directive)")
                    continue
                attrs = {k.lower(): v for k, v in _ATTR.findall(line[at:])}
                cmd, data = attrs.get("cmd", "").lower(), attrs.get("data", "")
                if line[:at - 1].strip() or line[line.find("/>", at) + 2:].strip():
                    out.errors.append(f"{where}: a directive must be alone on its line")
                if cmd == "set":
                    name, sep, value = data.partition("=")
                    if not sep:
                        out.errors.append(f"{where}: set without name=value")
                    out.variables[name.strip()] = value.strip()
                elif cmd == "include":
                    pattern = data if os.path.isabs(data) else str(path.parent / data)
                    matches = sorted(glob.glob(pattern))
                    if not matches:
                        out.errors.append(f"{where}: include {data!r} matches no file")
                    for match in matches:
                        process(Path(match), depth + 1)
                else:
                    out.errors.append(f"{where}: unexpected directive {cmd!r}")
                continue
            if "<!--#" in line:
                out.errors.append(f"{where}: '<!--#' starts a preprocessor comment")
            chunks.append(line)

    process(main, 0)
    out.text = "".join(chunks)
    return out


def params(element: ET.Element | None, tag: str = "param") -> dict[str, str]:
    """name -> value of the <param>s (or <variable>s) below element (one level of wrapper)."""
    if element is None:
        return {}
    found = element.findall(f"./{tag}") + element.findall(f"./*/{tag}")
    return {p.get("name", ""): p.get("value", "") for p in found}
