"""DistillRecord: what a surrogate folder's distill.json holds, read and written only here.

    DIR/distill.json            this record: config, the per-block error table, how much training
                                helped, and how well summed block errors order whole candidates
    DIR/fidelity_table.json     the per-block table alone (what the search reads: FidelityTable)
    DIR/surrogates.safetensors  the trained surrogate bank

Example:
    >>> record = DistillRecord.load("runs/quick/surrogates")
    >>> record.spearman_vs_sum_of_block_errors
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tocsr.core.artifacts import FolderRecord
from tocsr.core.distill.config import DistillConfig
from tocsr.core.distill.fidelity import FidelityTable


@dataclass(frozen=True)
class CandidateCheck:
    """One sampled whole candidate: its measured fidelity error vs the sum of its blocks' errors."""

    key: str
    whole: float
    sum_of_blocks: float


@dataclass(frozen=True)
class DistillRecord(FolderRecord):
    FILE_NAME: ClassVar[str] = "distill.json"
    KIND: ClassVar[str] = "tocsr.distill"
    SCHEMA_VERSION: ClassVar[int] = 1
    REBUILD: ClassVar[str] = "distil again with `tocsr distill --out {folder}`"

    teacher_folder: str
    space_id: str
    slots: int
    surrogates: int
    config: DistillConfig
    distill_s: float
    final_loss: float
    table: FidelityTable
    all_teacher_error: float                # the whole-candidate error of the teacher itself (should be ~0)
    candidates: tuple[CandidateCheck, ...]
    spearman_vs_sum_of_block_errors: float
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    def trained_over_init(self) -> dict[str, Any]:
        """How much distillation helped, per trainable surrogate: trained / initial block error."""
        import numpy as np

        ratios = [v["trained"] / v["init"] for v in self.table.entries.values() if v["params"] > 0 and v["init"] > 0]
        return {"median": float(np.median(ratios)) if ratios else float("nan"),
                "max": float(max(ratios)) if ratios else float("nan"),
                "share_at_most_half": float(np.mean([r <= 0.5 for r in ratios])) if ratios else float("nan"),
                "parameter_free": sorted("|".join(k) for k, v in self.table.entries.items() if v["params"] == 0)}

    def to_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher_folder, "space_id": self.space_id, "slots": self.slots,
                "surrogates": self.surrogates, "config": dict(self.config.__dict__), "distill_s": self.distill_s,
                "final_loss": self.final_loss, "fidelity_table": self.table.to_dict(),
                "trained_over_init": self.trained_over_init(),
                "whole_candidate": {"all_teacher": self.all_teacher_error,
                                    "spearman_vs_sum_of_block_errors": self.spearman_vs_sum_of_block_errors,
                                    "n": len(self.candidates),
                                    "values": [c.__dict__ for c in self.candidates]}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistillRecord:
        whole = d["whole_candidate"]
        return cls(teacher_folder=d["teacher"], space_id=d["space_id"], slots=int(d["slots"]),
                   surrogates=int(d["surrogates"]), config=DistillConfig(**d["config"]),
                   distill_s=float(d["distill_s"]), final_loss=float(d["final_loss"]),
                   table=FidelityTable.from_dict(d["fidelity_table"]), all_teacher_error=float(whole["all_teacher"]),
                   candidates=tuple(CandidateCheck(**v) for v in whole["values"]),
                   spearman_vs_sum_of_block_errors=float(whole["spearman_vs_sum_of_block_errors"]),
                   environment=d.get("environment", {}))

    def describe(self, folder: str | Path) -> list[str]:
        """What `tocsr distill` prints."""
        r = self.trained_over_init()
        return [f"{self.surrogates} surrogates over {self.slots} slots in {self.distill_s:.0f} s; trained/init "
                f"error median {r['median']:.3f}, {100 * r['share_at_most_half']:.0f}% at most half; whole-candidate "
                f"vs sum-of-blocks Spearman {self.spearman_vs_sum_of_block_errors:.3f} (n={len(self.candidates)})",
                f"wrote {Path(folder) / self.FILE_NAME}"]
