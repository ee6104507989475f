"""Fine-tuning the chosen backbone as a diffusion model (the step after the search).

The search assembles a candidate from surrogates that were each distilled alone, block by block; nothing
has trained them together. Here the assembled backbone (teacher blocks it keeps, surrogates it chose) is
trained as a whole with the teacher's diffusion objective on the teacher's latents, plus a term that
matches the teacher's own prediction on the same noised latent (output-level distillation, weight
`kd_weight`), EMA of the weights as the result. Its sample-level fidelity (paired sample error and
spectrum KID against the teacher's samples from the same noise, `SampleFidelity`) is measured before and
after, on the same draws, so the record says what the fine-tune bought. It trains on the accelerator
`make_accelerator` picks (bf16 autocast on CUDA); batches and noise are drawn on the CPU from seeded
generators, the same on either.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel

from tocsr.core.artifacts import FolderRecord
from tocsr.core.assembly import CompactUNet2DConditionModel, build_unet, load_surrogate_weights
from tocsr.core.distill.config import FinetuneConfig
from tocsr.core.distill.sample_fidelity import SampleFidelity
from tocsr.core.space import ArchSpec, SearchSpace
from tocsr.core.teacher.diffusion_train import Denoiser
from tocsr.core.teacher.evaluate import prediction_target
from tocsr.core.training import (
    Checkpointer,
    adamw,
    check_finite,
    load_optimizer,
    make_accelerator,
    progress,
    save_optimizer,
)


@dataclass(frozen=True)
class FinetuneRecord(FolderRecord):
    """What the fine-tune of one chosen backbone did, with its sample-level fidelity before and after."""

    FILE_NAME: ClassVar[str] = "finetune.json"
    KIND: ClassVar[str] = "tocsr.finetune"
    SCHEMA_VERSION: ClassVar[int] = 1
    REBUILD: ClassVar[str] = "delete {folder} and rerun `tocsr run` (or `tocsr finetune`)"

    arch_key: str
    arch_choices: dict[str, str]
    config: dict[str, Any]
    seconds: float
    loss_first: float
    loss_last: float
    before: dict[str, float]          # SampleScore of the assembled backbone as searched
    after: dict[str, float]           # SampleScore of the fine-tuned backbone (EMA weights)
    unet_folder: str = "unet"         # diffusers folder of the fine-tuned CompactUNet2DConditionModel
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"arch_key": self.arch_key, "arch_choices": dict(self.arch_choices), "config": dict(self.config),
                "seconds": self.seconds, "loss_first": self.loss_first, "loss_last": self.loss_last,
                "before": dict(self.before), "after": dict(self.after), "unet_folder": self.unet_folder}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneRecord:
        return cls(d["arch_key"], d["arch_choices"], d["config"], float(d["seconds"]), float(d["loss_first"]),
                   float(d["loss_last"]), d["before"], d["after"], d.get("unet_folder", "unet"),
                   d.get("environment", {}))

    def describe(self) -> list[str]:
        b, a = self.before, self.after
        return [f"fine-tuned {self.arch_key}: {self.config['steps']} steps in {self.seconds:.0f} s, loss "
                f"{self.loss_first:.4f} -> {self.loss_last:.4f}; sample-level fidelity vs the teacher "
                f"({b['n_samples']} samples, {b['steps']} DDIM steps, same noise), mean ± spread:",
                f"  paired sample error {b['paired_error']:.4f} ± {b['paired_error_std']:.4f} -> "
                f"{a['paired_error']:.4f} ± {a['paired_error_std']:.4f}",
                f"  spectrum KID        {b['spectrum_kid']:.3f} ± {b['spectrum_kid_std']:.3f} -> "
                f"{a['spectrum_kid']:.3f} ± {a['spectrum_kid_std']:.3f}"]


def assembled_backbone(teacher, space: SearchSpace, spec: ArchSpec, bank: dict) -> CompactUNet2DConditionModel:
    """The candidate as one diffusers model: the teacher's weights where it keeps the teacher's blocks, the
    trained surrogates where it replaced them."""
    model = build_unet(space, spec, teacher.unet)
    load_surrogate_weights(model, space, spec, {k: m.state_dict() for k, m in bank.items()})
    return model


def load_finetuned(folder: str | Path) -> tuple[CompactUNet2DConditionModel, FinetuneRecord]:
    record = FinetuneRecord.load(folder)
    return CompactUNet2DConditionModel.from_pretrained(Path(folder) / record.unet_folder).eval(), record


def finetune_backbone(teacher, space: SearchSpace, spec: ArchSpec, bank: dict, latents: torch.Tensor,
                      out_dir: str | Path, cfg: FinetuneConfig = FinetuneConfig(), resume: bool = False
                      ) -> FinetuneRecord:
    """Fine-tune the assembled `spec` on the teacher's training `latents`; writes <out>/unet and finetune.json."""
    out = Path(out_dir)
    checkpointer = Checkpointer(out / "checkpoints")
    scheduler = teacher.scheduler
    acc = make_accelerator()
    device = acc.device
    model = assembled_backbone(teacher, space, spec, bank).to(device)
    condition = copy.deepcopy(teacher.denoiser.condition).eval().requires_grad_(False).to(device)
    scorer = SampleFidelity(teacher.denoiser, space, bank, dict(scheduler.config), teacher.autoencoder,
                            tuple(latents.shape[1:]), n=cfg.samples, steps=cfg.sample_steps, seed=cfg.seed + 2024,
                            device=device)
    before = scorer.evaluate_denoiser(Denoiser(model, condition).eval())
    optimizer = adamw(model.parameters(), lr=cfg.lr, weight_decay=1e-2)
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay)
    start, loss_first = 0, float("nan")
    latest = checkpointer.latest() if resume else None
    if latest is not None:
        meta = checkpointer.latest_meta()
        model = CompactUNet2DConditionModel.from_pretrained(latest / "unet").to(device)
        optimizer = adamw(model.parameters(), lr=cfg.lr, weight_decay=1e-2)
        state = load_optimizer(latest / "optimizer.pt", optimizer)
        ema = EMAModel(model.parameters(), decay=cfg.ema_decay)
        ema.load_state_dict(state["ema"])
        start, loss_first = int(meta["step"]), float(meta["loss_first"])
    if cfg.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    ema.to(device)
    student = Denoiser(model, condition).train()
    teacher.denoiser.eval().to(device)
    loss = torch.tensor(float("nan"))
    t0 = time.perf_counter()
    with progress("finetune", cfg.steps, start) as bar:
        for step in range(start, cfg.steps):
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 101)
            idx = torch.randint(0, len(latents), (cfg.batch,), generator=gen)
            z0 = latents[idx]
            noise = torch.randn(z0.shape, generator=gen)
            t = torch.randint(0, int(scheduler.config.num_train_timesteps), (cfg.batch,), generator=gen)
            zt = scheduler.add_noise(z0, noise, t)
            z0, noise, zt, t = z0.to(device), noise.to(device), zt.to(device), t.to(device)
            with acc.autocast():
                with torch.no_grad():
                    reference = teacher.denoiser(zt, t).float()
                pred = student(zt, t).float()
            loss = F.mse_loss(pred, prediction_target(scheduler, z0, noise, t).float()) \
                + cfg.kd_weight * F.mse_loss(pred, reference)
            check_finite(loss, step, checkpointer)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            ema.step(model.parameters())
            if step == 0:
                loss_first = float(loss.item())
            bar.update(1, loss=loss.item())
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                def write(path: Path) -> None:
                    model.save_pretrained(path / "unet")
                    save_optimizer(path / "optimizer.pt", optimizer, {"ema": ema.state_dict()})

                checkpointer.save(step + 1, write, {"loss": loss.item(), "loss_first": loss_first})
    ema.copy_to(model.parameters())
    if cfg.gradient_checkpointing:
        model.unet.disable_gradient_checkpointing()
    model.eval()
    after = scorer.evaluate_denoiser(Denoiser(model, condition).eval())
    model.save_pretrained(out / "unet")
    record = FinetuneRecord(spec.key, dict(spec.replaced()), asdict(cfg), time.perf_counter() - t0, loss_first,
                            float(loss.item()), asdict(before), asdict(after))
    from tocsr.core.provenance import environment

    record.save(out, environment())
    return record
