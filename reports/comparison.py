"""The comparison a run reports: its SR models beside interpolation and trained baselines, quality
once on held-out photographs, cost on every device profile (paired with the teacher), and visual
crops. `tocsr.app.stages.stage_eval` calls `compare_methods` and writes its rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.probe import teacher_reference
from bench.profile import DeviceProfile
from reports.evaluate import LanczosSR, SRMethod, evaluate_quality, report_rows
from reports.rows import ReportRow
from tocsr.core.baselines import (
    Interpolate,
    load_baseline,
    load_external_checkpoint,
    save_baseline,
    train_baseline,
)
from tocsr.core.data import load_photos, split_photos
from tocsr.core.errors import TocsrError
from tocsr.core.imageio import save_png
from tocsr.core.sr.evaluate import eval_pairs
from tocsr.core.sr.info import SRModelInfo
from tocsr.core.sr.models import load_student
from tocsr.core.sr.onestep import OneStepSR
from tocsr.core.sr.run import MultiStepSR
from tocsr.core.sr.train import load_sr_teachers


def load_sr_methods(teacher, sr_dir: Path, profile_name: str, with_teacher: bool) -> tuple[list[SRMethod], SRModelInfo]:
    """The one-step student of an SR folder (and optionally its multi-step SR teacher) as SRMethods."""
    info = SRModelInfo.load(sr_dir)
    cfg = info.config
    student = load_student(sr_dir / "student")
    one = OneStepSR(teacher.autoencoder, student, cfg.scale)
    methods = [SRMethod(f"tocsr-onestep ({profile_name})", "one-step", one, False, info.arch.key,
                        cost_module=one.for_degradation(None))]
    if with_teacher:
        sr_teachers, sr_config = load_sr_teachers(sr_dir, teacher.denoiser.condition)
        multi = MultiStepSR(teacher.autoencoder, sr_teachers, sr_config, cfg.scale, cfg.sample_steps, cfg.t_start,
                            cfg.sample_chains)
        methods.append(SRMethod(f"sr-teacher ({cfg.sample_chains} chains x {cfg.sample_steps} steps)", "multi-step",
                                multi, False, "expanded-teacher", cost_module=multi.for_degradation(None)))
    return methods, info


def _baselines(names, run: Path, train, scale: int, steps: int, patch: int) -> list[SRMethod]:
    """Each baseline trained once per run (kept under <run>/baselines/<name>) and reloaded on reruns."""
    methods = []
    for name in names:
        folder = run / "baselines" / name
        if (folder / "model.safetensors").is_file():
            model, _ = load_baseline(folder)
        else:
            model = train_baseline(name, train, scale, steps, patch_px=patch)
            save_baseline(model, name, scale, patch // scale, folder)
        methods.append(SRMethod(name, "classical", model, True))
    return methods


def _save_crops(methods: list[SRMethod], val, patch: int, scale: int, folder: Path) -> None:
    hr, lr = eval_pairs(val, patch, scale, "realesrgan")
    to_u8 = lambda t: (((t.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())  # noqa: E731
    save_png(folder / "0-ground-truth.png", to_u8(hr[0]))
    save_png(folder / "1-input (nearest).png", np.repeat(np.repeat(to_u8(lr[0]), scale, 0), scale, 1))
    for i, m in enumerate(methods):
        save_png(folder / f"{i + 2}-{m.name}.png", to_u8(m.sr(lr[:1], "realesrgan")[0]))


def compare_methods(run: Path, profiles: list[DeviceProfile], teacher, sr_dirs: dict[str, Path], baseline_steps: int,
                    baselines: tuple[str, ...], external: list[str], data: str | Path | None
                    ) -> tuple[list[ReportRow], dict]:
    """Rows for every method on every profile, crops under <run>/eval/crops; returns (rows, what they were
    scored on)."""
    methods: list[SRMethod] = []
    info = None
    for i, (pname, d) in enumerate(sorted(sr_dirs.items())):
        ms, info = load_sr_methods(teacher, Path(d), pname, with_teacher=(i == 0))
        methods += ms
    scale, patch = (info.scale, info.config.patch_px) if info else (4, teacher.preset.image_px)
    photos, _ = load_photos(data, min_side=patch)
    train, val = split_photos(photos, teacher.preset.val_fraction, teacher.preset.seed)
    methods = [SRMethod("bicubic", "interpolation", Interpolate(scale), True),
               SRMethod("lanczos", "interpolation", LanczosSR(scale), True)] + methods
    methods += _baselines(baselines, run, train, scale, baseline_steps, patch)
    for spec in external:                     # "NAME=FILE", or a bare FILE named by its stem
        name, _, path = spec.rpartition("=")
        model, ext_scale = load_external_checkpoint(path)
        if ext_scale != scale:
            raise TocsrError(f"{path}: the checkpoint upscales x{ext_scale}; this run evaluates x{scale}")
        methods.append(SRMethod(name or f"external:{Path(path).stem}", "external", model, True,
                                arch_key=f"external:{Path(path).name}"))
    quality = evaluate_quality(methods, val, patch, scale)
    rows = report_rows(methods, quality, profiles, lambda profile: teacher_reference(teacher, profile))
    _save_crops(methods, val, patch, scale, run / "eval" / "crops")
    return rows, {"scale": scale, "patch_px": patch, "baseline_steps": baseline_steps,
                  "val_images": [p.name for p in val]}
