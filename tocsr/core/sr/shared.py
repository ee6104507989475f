"""The SR stage's part that does not depend on the backbone a search chose: the (HR, LR) latent pair cache and
the multi-step SR teacher of each degradation. A run with several devices trains it once (`train_shared`)
and every device's student starts from it (`load_shared`); `tocsr sr` alone trains it in its own folder.

    DIR/sr_shared.json          SharedSRRecord: the settings it was trained with and what it cost
    DIR/pair_cache.pt           the cache's latents (its pixels are re-made from the photographs and seed)
    DIR/sr_teacher/<kind>/      as in an SR model folder (tocsr.core.sr.info), DIR/sr_scheduler/ their schedule

The seconds spent here stay in every student's training budget (SRModelInfo.TRAINING_PARTS): the
baselines compared with a device's model get what that model cost to train, shared part included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from tocsr.core.artifacts import FolderRecord
from tocsr.core.errors import ConfigError
from tocsr.core.provenance import environment
from tocsr.core.sr.config import SRConfig
from tocsr.core.sr.data import SRPairs
from tocsr.core.sr.train import (
    SR_SCHEDULER_DIR,
    SR_TEACHER_DIR,
    PairCache,
    SRDenoiser,
    load_sr_teachers,
    train_sr_teacher,
)

# What the shared part is trained with; the student's settings (steps, loss weights, its teacher targets)
# are the rest of SRConfig and may differ between the devices that share it.
SHARED_FIELDS = ("scale", "patch_px", "batch", "teacher_steps", "teacher_lr", "t_start", "teacher_start_share",
                 "pair_cache", "teacher_loss_floor", "seed", "kinds", "train_photographs")
PAIR_CACHE_FILE = "pair_cache.pt"


def shared_config(cfg: SRConfig) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in SHARED_FIELDS}


def teacher_identity(teacher) -> str:
    """The teacher a shared part was trained from: its record's sha256 (the same teacher wherever its folder is
    reached from), or its resolved folder when it has no record (a teacher built in memory)."""
    record = Path(teacher.folder) / "teacher.json"
    if record.is_file():
        return "sha256:" + hashlib.sha256(record.read_bytes()).hexdigest()
    return str(Path(teacher.folder).resolve())


@dataclass(frozen=True)
class SharedSRRecord(FolderRecord):
    FILE_NAME: ClassVar[str] = "sr_shared.json"
    KIND: ClassVar[str] = "tocsr.sr_shared"
    # 2: `train_photographs` in the config; a version-1 part trained on every training photograph (0)
    SCHEMA_VERSION: ClassVar[int] = 2
    REBUILD: ClassVar[str] = "delete {folder} and run the main job again"
    MIGRATIONS: ClassVar[dict] = {1: lambda d: {**d, "config": {**d["config"], "train_photographs": 0}}}

    config: dict[str, Any]              # shared_config(SRConfig) it was trained with
    timings_s: dict[str, float]         # pair_cache_s, sr_teacher_s
    teacher_folder: str
    teacher_identity: str               # teacher_identity(teacher)
    device: str
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "environment"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SharedSRRecord:
        return cls(dict(d["config"]), {k: float(v) for k, v in d["timings_s"].items()}, str(d["teacher_folder"]),
                   str(d["teacher_identity"]), str(d["device"]), dict(d.get("environment", {})))


@dataclass
class SharedSR:
    """What a student trains from: the pair cache and the SR teachers, and what they cost to make."""

    cache: PairCache
    sr_teachers: dict[str, SRDenoiser]
    timings_s: dict[str, float]


def train_shared(teacher, train_photos, out_dir: str | Path, cfg: SRConfig, resume: bool, acc,
                 for_sharing: bool = True) -> SharedSR:
    """Encode the pair cache and train one SR teacher per degradation into `out_dir`; `for_sharing` also
    writes the record and the cache's latents, so that other devices' SR stages can start from the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    ae = teacher.autoencoder.eval().to(acc.device)
    cache = PairCache.build(ae, train_photos, cfg, cfg.seed, acc.device, batch=256 if acc.device.type == "cuda" else 32)
    timings = {"pair_cache_s": time.perf_counter() - t}
    t = time.perf_counter()
    # One SR teacher per degradation, as the students: a blind teacher's first call stayed at bicubic on
    # Real-ESRGAN inputs, as the blind student did (docs/status.md). None where the config trains none.
    sr_teachers = {kind: train_sr_teacher(teacher, cache.of_kind(kind), out, cfg, kind, resume, acc)
                   for kind in cfg.kinds} if cfg.has_sr_teachers else {}
    timings["sr_teacher_s"] = time.perf_counter() - t
    if acc.is_main_process and for_sharing:
        torch.save({"z_hr": cache.z_hr.cpu(), "z_lr": cache.z_lr.cpu()}, out / PAIR_CACHE_FILE)
        SharedSRRecord(shared_config(cfg), timings, str(teacher.folder), teacher_identity(teacher),
                       str(acc.device)).save(out, environment())
    acc.wait_for_everyone()
    return SharedSR(cache, sr_teachers, timings)


def load_shared(shared_dir: str | Path, teacher, train_photos, cfg: SRConfig, out_dir: str | Path, device
                ) -> SharedSR:
    """The shared part trained by `train_shared`, checked against `cfg` and `teacher`; its SR teachers are
    copied into `out_dir` so that the SR model folder stays self-contained."""
    shared = Path(shared_dir)
    record = SharedSRRecord.load(shared)
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in shared_config(cfg).items()}
    got = {k: list(v) if isinstance(v, tuple) else v for k, v in record.config.items()}
    if got != want:
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        raise ConfigError(f"{shared}: the shared SR part was trained with other settings ({', '.join(diff)}: "
                          f"{[got.get(k) for k in diff]} vs {[want.get(k) for k in diff]} asked); train it again")
    if record.teacher_identity != teacher_identity(teacher):
        raise ConfigError(f"{shared}: the shared SR part was trained from the teacher {record.teacher_folder}, "
                          f"not {teacher.folder}; train it again from this teacher")
    latents = torch.load(shared / PAIR_CACHE_FILE, weights_only=True)
    pairs = SRPairs(train_photos, cfg.patch_px, cfg.scale, cfg.pair_cache, cfg.seed, cfg.kinds)
    if len(latents["z_hr"]) != len(pairs):
        raise ConfigError(f"{shared / PAIR_CACHE_FILE}: {len(latents['z_hr'])} pairs, the settings make "
                          f"{len(pairs)}; train the shared part again")
    cache = PairCache(pairs, latents["z_hr"].to(device), latents["z_lr"].to(device))
    if not cfg.has_sr_teachers:           # the config trained none (SRConfig.teacher_steps = 0)
        return SharedSR(cache, {}, dict(record.timings_s))
    sr_teachers, _ = load_sr_teachers(shared, teacher.denoiser.condition)
    out = Path(out_dir)
    for name in (SR_TEACHER_DIR, SR_SCHEDULER_DIR):
        shutil.copytree(shared / name, out / name, dirs_exist_ok=True)
    return SharedSR(cache, {k: m.to(device) for k, m in sr_teachers.items()}, dict(record.timings_s))
