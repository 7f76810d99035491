"""esl-guard: enforce an Acceptable Usage Policy on FreeSWITCH over its event socket."""

__version__ = "0.1.0"


def compiled() -> bool:
    """Whether the decision hot path runs compiled by mypyc (setup.py), not as plain Python."""
    from esl_guard import tracker

    return not tracker.__file__.endswith(".py")
