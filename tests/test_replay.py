"""Issue 15: `esl-guard replay` over CDRs and captures (units, formats, CLI behaviour)."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def replay_args(conf: Path, sources: Sequence[Path | str], *, as_json: bool = False,
                compare: Path | None = None, columns: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(config=str(conf), sources=[str(s) for s in sources], json=as_json,
                              compare=None if compare is None else str(compare),
                              cdr_columns=columns)
