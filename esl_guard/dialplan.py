"""The dialplan that goes with a conf (``esl-guard example dialplan -c CONF``, issue 12): the
shipped snippet (``conf/dialplan-locked-accounts.xml``) preceded by an extension that sets
``${esl_guard_class}`` to the dialled number's destination class, so the snippet's admission
gate reads the class's entry (``ACCOUNT:CLASS``) before routing; and the snippet's emergency
numbers replaced by the conf's exempt classes.  Pure text in, text out.
"""
from __future__ import annotations

import re
from itertools import groupby

from esl_guard.policy import Destinations

#: the emergency condition of the shipped snippet: its number list is the conf's
_EMERGENCY = re.compile(r'(<condition field="destination_number" expression="\^\\\+\?\()'
                        r'[0-9|]+(\)\$" break="on-true">)')


def class_extension(dests: Destinations) -> str:
    """``<extension name="esl_guard_destination_class">``: one condition per prefix length
    and class, shortest first, each setting ``esl_guard_class`` inline (``break="never"``:
    every condition is tried), so the longest matching prefix is the one left, as esl-guard
    classifies (``Destinations.classify``).  Exempt classes are not set here (the snippet's
    emergency condition lets them through).  Empty without classes."""
    pairs = sorted((len(p), name, p) for name, c in dests.classes.items() if not c.exempt
                   for p in c.prefixes)
    if not pairs:
        return ""
    lines = ['  <extension name="esl_guard_destination_class" continue="true">']
    for (_, name), group in groupby(pairs, key=lambda t: (t[0], t[1])):
        alts = "|".join(p for _, _, p in group)
        lines += [f'    <condition field="destination_number" expression="^\\+?({alts})" '
                  'break="never">',
                  f'      <action application="set" data="esl_guard_class={name}" '
                  'inline="true"/>',
                  '    </condition>']
    lines.append("  </extension>")
    return "\n".join(lines) + "\n"


def for_conf(snippet: str, dests: Destinations) -> str:
    """The shipped ``snippet`` for a conf's classes: the class extension first in its
    ``<include>``, and its emergency numbers those of the conf's exempt classes (all of
    them: an exempt class matches whole numbers)."""
    exempt = sorted({p for c in dests.classes.values() if c.exempt for p in c.prefixes})
    if exempt:
        snippet = _EMERGENCY.sub(lambda m: m.group(1) + "|".join(exempt) + m.group(2), snippet)
    ext = class_extension(dests)
    if ext:
        snippet = snippet.replace("<include>\n", "<include>\n" + ext, 1)
    return snippet
