"""esl-guard: enforce an Acceptable Usage Policy on FreeSWITCH over its event socket."""

__version__ = "0.1.0"
