"""What-if replay (`esl-guard replay`): run a policy over recorded traffic on its recorded clock.

The replay drives the daemon's own :class:`esl_guard.tracker.Tracker` through its public API
(``on_event``, ``tick``), with ``now`` and the wall clock both set to the recorded time, so a
policy decides exactly what the daemon would have decided on the same events.

* :mod:`.sources`: recognise a file by its content (gzip by its magic bytes), read raw ESL
  captures through the daemon's frame reader and event decoder;
* :mod:`.cdr`: mod_cdr_csv and mod_json_cdr records -> calls in start order (bounded memory);
* :mod:`.engine`: calls and events -> tracker, with an explicit clock that fires duration
  limits and lock expiry at their moment;
* :mod:`.compare` and :mod:`.report`: the diff of two policies, the text and JSON output;
* :mod:`.cli`: the ``replay`` subcommand.
"""
from __future__ import annotations
