"""What every training stage shares: atomic checkpoints, resume, a NaN guard, progress, accelerate.

Checkpoints are folders `step-0001200/` written to a temporary folder and renamed only once complete
(with `meta.json` written last), so a process killed mid-save leaves the previous checkpoint as the
newest complete one. Weights are diffusers folders / safetensors; optimizer state is loaded with
`torch.load(weights_only=True)`, never unpickled code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tocsr.core.artifacts import atomic_write_text
from tocsr.core.errors import ArtifactError, TocsrError

log = logging.getLogger(__name__)
_STEP_PREFIX = "step-"


class TrainingDiverged(TocsrError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Checkpointer:
    def __init__(self, root: str | Path, keep: int = 2):
        self.root = Path(root)
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)

    def _complete(self) -> list[Path]:
        out = []
        for p in self.root.glob(f"{_STEP_PREFIX}*"):
            if p.is_dir() and (p / "meta.json").is_file() and p.name[len(_STEP_PREFIX):].isdigit():
                out.append(p)
        return sorted(out, key=lambda p: int(p.name[len(_STEP_PREFIX):]))

    def latest(self) -> Path | None:
        done = self._complete()
        return done[-1] if done else None

    def latest_meta(self) -> dict[str, Any] | None:
        path = self.latest()
        if path is None:
            return None
        try:
            return json.loads((path / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ArtifactError(f"{path / 'meta.json'}: unreadable checkpoint metadata ({err}); delete {path} "
                                "to resume from the one before") from None

    def save(self, step: int, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
        final = self.root / f"{_STEP_PREFIX}{step:07d}"
        tmp = self.root / f".tmp-{_STEP_PREFIX}{step:07d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        atomic_write_text(tmp / "meta.json", json.dumps({"step": step, "saved_utc": time.time(), **meta}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        # An old checkpoint is renamed out of the step-* namespace before it is deleted: rmtree removes
        # meta.json before the folder, so a kill mid-delete would otherwise leave a step folder that
        # looks complete by name and is not.
        for old in self._complete()[:-self.keep]:
            trash = self.root / f".old-{old.name}-{os.getpid()}"
            os.replace(old, trash)
            shutil.rmtree(trash, ignore_errors=True)
        for stale in [*self.root.glob(f".tmp-{_STEP_PREFIX}*"), *self.root.glob(f".old-{_STEP_PREFIX}*")]:
            if stale != tmp:
                shutil.rmtree(stale, ignore_errors=True)
        return final


def save_optimizer(path: Path, optimizer: torch.optim.Optimizer, extra: dict[str, Any] | None = None) -> None:
    torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), **(extra or {})}, path)


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  unpickling refused or file broken: say which and why
        raise ArtifactError(f"{path}: cannot load optimizer state safely ({type(err).__name__}: "
                            f"{str(err).splitlines()[0]})") from None
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return state


def check_finite(loss: torch.Tensor, step: int, checkpointer: Checkpointer) -> None:
    if not torch.isfinite(loss).all():
        last = checkpointer.latest()
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise TrainingDiverged(f"loss became {loss.item()} at step {step}; {where}. Lower the learning rate "
                               "or check the data, then run again with --resume")


@dataclass
class Progress:
    """One progress line per stage: rich on a terminal, periodic log lines elsewhere (CI logs)."""

    description: str
    total: int
    start: int = 0

    def __post_init__(self) -> None:
        self._t0 = time.perf_counter()
        self._done = self.start
        self._last_print = 0.0
        self._rich = None
        if sys.stderr.isatty():
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                      TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
            self._task = self._rich.add_task(self.description, total=self.total, completed=self.start, info="")
            self._rich.start()

    def update(self, n: int = 1, **info: float) -> None:
        self._done += n
        text = " ".join(f"{k} {v:.4g}" for k, v in info.items())
        finished = self._done == self.total
        if self._done > self.total:
            # More work than announced (a cost table's refits measure more candidates): the total grows
            # with it, so the line never shows 189/176 and a negative eta, and it is not printed every call.
            self.total = self._done
        if self._rich is not None:
            self._rich.update(self._task, advance=n, info=text, total=self.total)
            return
        now = time.perf_counter()
        if now - self._last_print >= 15 or finished:
            self._last_print = now
            rate = (self._done - self.start) / max(now - self._t0, 1e-9)
            eta = (self.total - self._done) / rate if rate > 0 else math.inf
            print(f"{self.description}: {self._done}/{self.total} {text} (eta {eta:.0f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()


@contextmanager
def progress(description: str, total: int, start: int = 0) -> Iterator[Progress]:
    bar = Progress(description, total, start)
    try:
        yield bar
    finally:
        bar.close()


def adamw(params, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """The optimiser of every training stage and baseline (AdamW; with weight_decay 0 it is Adam). Fused where
    torch has a fused kernel for the parameters' device: the same update, one kernel instead of one loop per
    tensor, which on CPU made the tiny teacher's step several times cheaper (the loop dominated with hundreds
    of small tensors). The baselines use it too, so a budget in seconds buys every method the same."""
    params = [p for p in params]
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, fused=fused or None)


def make_accelerator(cpu_threads: int | None = None):
    """An accelerate.Accelerator: bf16 autocast on CUDA, plain fp32 on CPU; multi-process under
    `accelerate launch` (each process then reads its own share of every batch)."""
    from accelerate import Accelerator

    if cpu_threads is not None and not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads)
    return Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")


def batch_indices(step: int, batch: int, rank: int = 0, world: int = 1) -> range:
    """Dataset indices of one process's share of global step `step`: resuming at a step replays the
    same data as an uninterrupted run."""
    start = (step * world + rank) * batch
    return range(start, start + batch)
