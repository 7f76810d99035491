"""esl-guard benchmark: ``python -m bench [--quick] [--json PATH]``.

Five measurements, each printed with its target and PASS/FAIL:

* ``throughput``: events/s the real daemon (:class:`esl_guard.service.Guard` with its
  NodeLink/GuardESL) sustains end to end over loopback TCP, fed by a separate sender process;
* ``baselines``: the same byte stream read by stock greenswitch ``InboundESL`` and by a bare
  socket read (no parsing), and the daemon's ratio to each;
* ``latency``: breaching CREATE written by the sender -> ``api uuid_kill`` back at the sender,
  under 5,000 background events/s;
* ``memory``: bytes per tracked call (tracemalloc and RSS) with 100k calls over 10k accounts;
* ``scaling``: decoder + tracker cost per event with 1k, 10k and 100k live calls.
"""
