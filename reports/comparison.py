"""The comparison a run reports: its SR models beside interpolation and trained baselines, quality
once on test photographs, cost on every device profile (paired with the teacher), and visual
crops. `tocsr.app.stages.stage_eval` calls `compare_methods` and writes its rows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.probe import teacher_as_shipped, teacher_reference
from bench.profile import DeviceProfile
from reports.evaluate import LanczosSR, SRMethod, report_rows
from reports.metrics import FULL_REFERENCE, NO_REFERENCE
from reports.protocol import (
    EvalMethod,
    EvalResult,
    _to_tensor,
    evaluate_folder,
    find_images,
    run_module_tiled,
)
from reports.rows import ReportRow, tocsr_method_name
from search.selection import ShippedYardstick
from tocsr.core.baselines import (
    BaselineTraining,
    Interpolate,
    load_baseline,
    load_external_checkpoint,
    save_baseline,
    train_baseline,
)
from tocsr.core.data import DataSplit, load_split
from tocsr.core.errors import TocsrError
from tocsr.core.imageio import save_png
from tocsr.core.provenance import environment
from tocsr.core.space import derive_search_space
from tocsr.core.sr.data import sr_photographs
from tocsr.core.sr.info import SRModelInfo
from tocsr.core.sr.models import load_student
from tocsr.core.sr.onestep import OneStepSR
from tocsr.core.sr.parts import deployed_branch, deployed_decoder, deployed_encoder
from tocsr.core.sr.router import ROUTER_DIR, DegradationRouter, RoutedSR
from tocsr.core.sr.run import MultiStepSR
from tocsr.core.sr.train import load_sr_teachers
from tocsr.core.training import make_accelerator


def load_sr_methods(teacher, sr_dir: Path, profile_name: str, with_teacher: bool) -> tuple[list[SRMethod], SRModelInfo]:
    """The one-step student of an SR folder (and optionally its multi-step SR teacher) as SRMethods. A method
    that is told which degradation made its input says so in its name: the others are blind."""
    info = SRModelInfo.load(sr_dir)
    cfg = info.config
    student = load_student(sr_dir / "student")
    one = OneStepSR(teacher.autoencoder, student, cfg.scale, deployed_decoder(sr_dir, info.decoder, info.degradations),
                    deployed_encoder(sr_dir, info.encoder, info.degradations),
                    deployed_branch(sr_dir, cfg.pixel_branch_width))
    if cfg.routes:        # its students behind its router: blind, and one call costs the router and one student
        routed = RoutedSR(one, DegradationRouter.from_pretrained(sr_dir / ROUTER_DIR).eval())
        methods = [SRMethod(tocsr_method_name(profile_name, "routed"), "one-step", routed, False, info.arch.key,
                            cost_module=routed.cost_module())]
    else:
        told = "told the degradation" if one.takes_degradation else ""
        methods = [SRMethod(tocsr_method_name(profile_name, told), "one-step", one, False, info.arch.key,
                            cost_module=one.for_degradation(None))]
    if with_teacher and cfg.has_sr_teachers:      # a config with no SR teacher trained none to score
        sr_teachers, sr_config = load_sr_teachers(sr_dir, teacher.denoiser.condition)
        multi = MultiStepSR(teacher.autoencoder, sr_teachers, sr_config, cfg.scale, cfg.sample_steps, cfg.t_start,
                            cfg.sample_chains)
        methods.append(SRMethod(f"sr-teacher ({cfg.sample_chains}x{cfg.sample_steps} steps, told the degradation)", "multi-step",
                                multi, False, "expanded-teacher", cost_module=multi.for_degradation(None)))
    return methods, info


class _Told(nn.Module):
    """An SRMethod as a [0, 1] -> [0, 1] module for one degradation (told to methods that take it)."""

    def __init__(self, method: SRMethod, degradation: str):
        super().__init__()
        self.method, self.degradation = method, degradation

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return (self.method.sr(x01 * 2 - 1, self.degradation) + 1) / 2


# SRMethod kinds -> the kinds of an evaluation table (reports.protocol.EvalMethod)
_EVAL_KIND = {"interpolation": "interpolation", "classical": "baseline", "external": "external",
              "one-step": "tocsr", "multi-step": "tocsr"}


def eval_method(method: SRMethod, degradation: str, scale: int, decisions: list[str] | None = None,
                probabilities: list[dict[str, float]] | None = None) -> EvalMethod:
    """What the protocol runs: the method on whole 8-bit images (tiled), told `degradation` only if it takes it.
    A routed method (tocsr.core.sr.router.RoutedSR, blind) is told nothing: its router reads each whole LR image
    once, before tiling, and every tile runs the student of that answer, which is appended to `decisions` (in the
    order the images come, so what the router got right is checkable against the truth), and the router's
    probability of each degradation to `probabilities` (how sure it was)."""

    def run(lr: np.ndarray) -> np.ndarray:
        told, kind = _route(method, lr, degradation)
        if told is not method and decisions is not None:
            decisions.append(kind)
        if told is not method and probabilities is not None:
            probabilities.append(method.module.probabilities(_to_tensor(lr) * 2 - 1)[0])
        return run_module_tiled(_Told(told, kind).eval(), lr, scale, device=_device_of(method.module))

    return EvalMethod(method.name, _EVAL_KIND[method.kind], method.arch_key or method.name, run)


def _route(method: SRMethod, lr: np.ndarray, degradation: str) -> tuple[SRMethod, str]:
    """(the method to run on `lr` or its tiles, the degradation to tell it): a routed method's students told its
    router's answer for the whole image `lr`; any other method as it is, told `degradation`."""
    if not isinstance(method.module, RoutedSR):
        return method, degradation
    kind = method.module.route(_to_tensor(lr) * 2 - 1)[0]
    return dataclasses.replace(method, module=method.module.model), kind


def _device_of(module: nn.Module) -> torch.device:
    """Where a module's weights are (the CPU for one without weights, e.g. an interpolation)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def _misroute_db(routed: RoutedSR, kind: str) -> dict[str, float] | None:
    """What sending a `kind` image to each other student costs (dB PSNR-Y, measured by the SR stage on training
    crops; DegradationRouter.loss_db), or None for a router that decides without costs."""
    loss = routed.router.config.loss_db
    if loss is None:
        return None
    row = loss[routed.router.kinds.index(kind)]
    return {other: round(float(v), 3) for other, v in zip(routed.router.kinds, row, strict=True) if other != kind}


def write_split_folder(data: str | Path | None, split: DataSplit, folder: Path, max_px: int, scale: int,
                       part: str = "test") -> list[str]:
    """The photographs of one split part as PNGs in `folder` (centre crop of at most `max_px` a side, a multiple
    of `scale`); for "test", the only code in a run that reads them. Returns their names."""
    got, _ = load_split(data, (part,), split, min_side=max(32, 16 * scale))
    names = []
    for photo in got[part]:
        h, w = photo.rgb.shape[:2]
        ch, cw = (min(h, max_px) // scale) * scale, (min(w, max_px) // scale) * scale
        y, x = (h - ch) // 2, (w - cw) // 2
        stem = photo.name.replace("/", "__").rsplit(".", 1)[0]
        save_png(folder / f"{stem}.png", np.ascontiguousarray(photo.rgb[y:y + ch, x:x + cw]))
        names.append(stem)
    return names


def _baselines(names, run: Path, train, scale: int, budget_s: float, max_steps: int | None,
               patch: int) -> tuple[list[SRMethod], dict]:
    """Each baseline trained once per run for `budget_s` wall-clock seconds (kept under <run>/baselines/<name>,
    reloaded on reruns); returns the methods and how each was trained."""
    device = str(make_accelerator().device)       # where they train now: a baseline trained elsewhere is retrained
    methods, trained = [], {}
    for name in names:
        folder = run / "baselines" / name
        meta = json.loads((folder / "baseline.json").read_text()) if (folder / "baseline.json").is_file() else {}
        if (meta.get("budget_s"), meta.get("max_steps"), meta.get("head"), meta.get("init"), meta.get("device", "cpu")) \
                == (budget_s, max_steps, "as published", BaselineTraining.init, device):
            model, meta = load_baseline(folder)
        else:
            model, info = train_baseline(name, train, scale, budget_s=budget_s, max_steps=max_steps, patch_px=patch)
            save_baseline(model, info, folder)
            meta = json.loads((folder / "baseline.json").read_text())
        trained[name] = meta
        methods.append(SRMethod(name, "classical", model, True))
    return methods, trained


def _save_crops(methods: list[SRMethod], test_dir: Path, scale: int, folder: Path, patch: int = 96) -> None:
    """The centre of the first test photograph, Real-ESRGAN degradation, every method on the same LR."""
    from reports.protocol import load_pair

    image = find_images(test_dir, None, scale)[0]
    hr, lr = load_pair(image, scale, "realesrgan", 0)
    h, w = lr.shape[:2]
    p = min(patch // scale, h, w)
    y, x = (h - p) // 2, (w - p) // 2
    save_png(folder / "0-ground-truth.png", np.ascontiguousarray(hr[y * scale:(y + p) * scale, x * scale:(x + p) * scale]))
    save_png(folder / "1-input (nearest).png", np.repeat(np.repeat(lr[y:y + p, x:x + p], scale, 0), scale, 1))
    for i, m in enumerate(methods):
        told, kind = _route(m, lr, "realesrgan")       # a router decides on the whole image, as when it was scored
        sr = eval_method(told, kind, scale).run(np.ascontiguousarray(lr[y:y + p, x:x + p]))
        save_png(folder / f"{i + 2}-{m.name}.png", sr)


def _quality(results: dict[str, EvalResult], name: str) -> dict[str, dict]:
    """A method's test figures per degradation, for its report rows: means, their intervals, and the paired
    differences to bicubic and to the best baseline."""
    out = {}
    for kind, res in results.items():
        q: dict = {"n_images": len(res.images)}
        best = res.best_baseline()
        for k in res.metrics():
            iv = res.interval(name, k)
            q[k], q[f"{k}_interval"] = iv.mean, [iv.low, iv.high]
        for ref in ("bicubic", best):
            if ref is not None and ref != name:
                d = res.paired(name, ref, "psnr_y")
                q[f"psnr_y_minus_{ref}"] = {"mean": d.mean, "low": d.low, "high": d.high}
        q |= {k: {"unavailable": why} for k, why in res.unavailable.items()}
        out[kind] = q
    return out


def budget_unit(info: SRModelInfo) -> str:
    """What the baselines' budget (`info.training_s`) is made of, in words for the report."""
    cfg = info.config
    if cfg.uses_sr_teachers:
        teachers = "pair cache, SR teachers, one-step student"
    elif cfg.has_sr_teachers:
        teachers = "pair cache, one-step student; not the SR teachers, which the student does not learn from"
    else:
        teachers = "pair cache, one-step student; this preset trains no SR teacher"
    return (f"wall-clock seconds on this machine, data preparation included; the TOC-SR share is its SR stage "
            f"({teachers}, and the deployed parts' training)")


def baseline_budget_from(infos: list[SRModelInfo]) -> SRModelInfo:
    """The SR model whose training seconds every trained baseline gets: the run's longest SR stage. Each device's
    student trained for its own seconds; a baseline, trained once per run and compared on every device, gets the
    most any of them had, so no device's comparison gives the baseline less than its student."""
    return max(infos, key=lambda info: info.training_s)


def compare_methods(run: Path, profiles: list[DeviceProfile], teacher, sr_dirs: dict[str, Path],
                    baselines: tuple[str, ...], external: list[str], data: str | Path | None,
                    test_max_px: int = 384, baseline_max_steps: int | None = None, extra_metrics: tuple[str, ...] = FULL_REFERENCE + NO_REFERENCE,
                    kinds: tuple[str, ...] = ("bicubic", "realesrgan"), nodes=None,
                    decision_speeds_ms: dict[str, float] | None = None,
                    yardsticks: dict[str, ShippedYardstick] | None = None) -> tuple[list[ReportRow], dict]:
    """Rows for every method on every profile; returns (rows, what they were scored on and how trained).

    Fair by construction: the trained baselines see the training photographs and degradations the TOC-SR
    student saw, for the wall-clock seconds its SR stage spent (SRModelInfo.training_s: the SR teachers included
    where the student learns from them); every method is scored
    blind (one model for all degradations) unless its name says it is told; and the figures are on test
    photographs, which no training or selection path reads (tocsr.core.data.DataSplit). Each degradation's
    table is kept as an evaluation folder, <run>/eval/test-<degradation>/ (`tocsr report` renders it).
    `nodes`: profile name -> the bench.remote.RemoteDevice that profile's costs are measured on.
    `decision_speeds_ms`: profile name -> the reference's ms when its search chose (reports.evaluate.report_rows).
    `yardsticks`: profile name -> how its search judged candidates beside the teacher as shipped, for those that did:
    their TOC-SR rows are timed beside it and judged the same way (reports.evaluate.report_rows)."""
    methods: list[SRMethod] = []
    infos = []
    for i, (pname, d) in enumerate(sorted(sr_dirs.items())):
        ms, info = load_sr_methods(teacher, Path(d), pname, with_teacher=(i == 0))
        methods += ms
        infos.append(info)
    if not infos:
        raise TocsrError("no SR model to compare: the comparison needs at least one `tocsr sr` folder")
    scale, patch = infos[0].scale, infos[0].config.patch_px
    budget_info = baseline_budget_from(infos)
    budget_s = budget_info.training_s
    # the photographs the student trained on (SRConfig.train_photographs may keep only some)
    train, _val = sr_photographs(data, teacher.preset.split, infos[0].config)
    methods = [SRMethod("bicubic", "interpolation", Interpolate(scale), True),
               SRMethod("lanczos", "interpolation", LanczosSR(scale), True)] + methods
    trained_methods, trained = _baselines(baselines, run, train, scale, budget_s, baseline_max_steps, patch)
    methods += trained_methods
    for spec in external:                     # "NAME=FILE", or a bare FILE named by its stem
        name, _, path = spec.rpartition("=")
        model, ext_scale = load_external_checkpoint(path)
        if ext_scale != scale:
            raise TocsrError(f"{path}: the checkpoint upscales x{ext_scale}; this run evaluates x{scale}")
        methods.append(SRMethod(name or f"external:{Path(path).stem}", "external", model, True,
                                arch_key=f"external:{Path(path).name}"))
    test_dir = run / "test" / "HR"
    test_names = write_split_folder(data, teacher.preset.split, test_dir, test_max_px, scale)
    images = find_images(test_dir, None, scale)
    results = {}
    # Scored on the accelerator the run trained on (the same figures up to float rounding; on a GPU run the SR
    # teacher's chains would take hours on its CPU); back on the CPU for the cost rows, which place each module
    # on its profile's device themselves.
    device = make_accelerator().device
    for m in methods:
        m.module.to(device)
    routing: dict[str, dict[str, dict]] = {}     # routed method -> degradation -> what its router decided
    by_name = {m.name: m.module for m in methods}
    for kind in kinds:
        decisions = {m.name: [] for m in methods if isinstance(m.module, RoutedSR)}
        sure = {name: [] for name in decisions}
        res = evaluate_folder(images, [eval_method(m, kind, scale, decisions.get(m.name), sure.get(m.name))
                                       for m in methods], scale,
                              kind, seed=0, extra_metrics=extra_metrics, hr_dir=str(test_dir))
        res.save(run / "eval" / f"test-{kind}", environment())
        results[kind] = res
        for name, got in decisions.items():
            routing.setdefault(name, {})[kind] = {"photographs": len(got), "routed_right": sum(k == kind for k in got),
                                                  "decisions": got, "probabilities": sure[name],
                                                  "misroute_db": _misroute_db(by_name[name], kind)}
    _save_crops(methods, test_dir, scale, run / "eval" / "crops")
    for m in methods:
        m.module.to("cpu")
    quality = {m.name: _quality(results, m.name) for m in methods}
    space = derive_search_space(teacher.unet)
    rows = report_rows(methods, quality, profiles, lambda profile: teacher_reference(teacher, profile), nodes,
                       decision_speeds_ms, lambda profile: teacher_as_shipped(teacher, space, profile), yardsticks)
    return rows, {"scale": scale, "patch_px": patch, "split": "test", "test_images": test_names,
                  "test_max_px": test_max_px, "train_images": sorted(p.name for p in train),
                  "baseline_budget_s": budget_s, "baselines_trained": trained,
                  "budget_unit": budget_unit(budget_info),
                  "student_steps": {pname: info.config.student_steps * info.config.students
                                    for pname, info in zip(sorted(sr_dirs), infos, strict=True)},
                  "told_degradation": [m.name for m in methods if getattr(m.module, "takes_degradation", False)],
                  "routing": routing}
