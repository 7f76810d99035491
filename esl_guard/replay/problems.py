"""Bad input found while replaying: counted, reported with file and line, never a traceback."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class ReplayError(Exception):
    """A source cannot be replayed at all (missing, unreadable, not a known format)."""


@dataclass
class Problems:
    """Bad rows and events: a count per file and the first ``keep`` with their place."""

    keep: int = 20
    total: int = 0
    by_file: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def add(self, file: str, line: int | None, reason: str) -> None:
        self.total += 1
        self.by_file[file] += 1
        if len(self.samples) < self.keep:
            where = f"{file}:{line}" if line is not None else file
            self.samples.append(f"{where}: {reason}")

    def lines(self) -> list[str]:
        if not self.total:
            return []
        out = [f"{self.total} bad row(s)/event(s) skipped: "
               + ", ".join(f"{f}: {n}" for f, n in sorted(self.by_file.items()))]
        out += self.samples
        if self.total > len(self.samples):
            out.append(f"... and {self.total - len(self.samples)} more")
        return out
