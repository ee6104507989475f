"""Trials and their append-only log.

Every completed evaluation is one JSON line, written and fsynced before the search moves on, so a
killed search loses nothing it finished and a restarted one never repeats an evaluation. A last line
cut short by a kill is detected, named in a warning and dropped (it was never completed); a
malformed line anywhere else is an error naming the file and line.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tocsr.core.errors import ArtifactError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    index: int
    key: str
    choices: dict[str, str]
    fidelity: float | None            # None when the evaluation failed (see error)
    costs: dict[str, float]
    objective: float | None
    feasible: bool
    method: str
    seed: int
    wall_s: float
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, allow_nan=False)


class TrialLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def read(self) -> list[Trial]:
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        trials = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                trials.append(Trial(**json.loads(line)))
            except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as err:
                is_tail = i == len(lines) - 1 and not raw.endswith(b"\n")
                if is_tail:
                    log.warning("%s: last line is incomplete (a run was killed while writing it); dropping it",
                                self.path)
                    self._truncate_to(len(raw) - len(line))
                    break
                raise ArtifactError(f"{self.path}: line {i + 1} is corrupted ({err}); the log cannot be trusted "
                                    "past it: restore it or start a new --out folder") from None
        return trials

    def _truncate_to(self, size: int) -> None:
        with open(self.path, "r+b") as fh:
            fh.truncate(size)

    def append(self, trial: Trial) -> None:
        with open(self.path, "ab") as fh:
            fh.write(trial.to_json().encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
