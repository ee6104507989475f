"""`tocsr distill`: train every surrogate of every slot against its teacher block, in one pass.

Per step: noise a batch of real-image latents at random timesteps, run the teacher once with every
slot recorded, and train each surrogate on its block's recorded inputs to reproduce the recorded
output (normalised feature MSE; inputs detached, so every surrogate learns only from its own block,
as in BK-SDM / LAPTOP-Diff's feature-level distillation). One optimiser holds all surrogates.

Training runs on the accelerator `tocsr.core.training.make_accelerator` picks (bf16 autocast on CUDA, fp32
on CPU); the noise and the batches are drawn on the CPU from seeded generators, so a run draws the same
data on either. The block errors before and after are measured in fp32.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from tocsr.core.artifacts import write_artifact
from tocsr.core.distill.bank import Bank, load_bank, new_bank, save_bank
from tocsr.core.distill.capture import block_output, record_slots
from tocsr.core.distill.config import DistillConfig
from tocsr.core.distill.fidelity import CandidateFidelity, FidelityTable, normalised_error
from tocsr.core.distill.record import CandidateCheck, DistillRecord
from tocsr.core.provenance import environment
from tocsr.core.space import SearchSpace, derive_search_space
from tocsr.core.training import (
    Checkpointer,
    adamw,
    check_finite,
    load_optimizer,
    make_accelerator,
    progress,
    save_optimizer,
)

log = logging.getLogger(__name__)


def _noised(latents: torch.Tensor, scheduler, idx: torch.Tensor, gen: torch.Generator,
            device: torch.device | str = "cpu"):
    z0 = latents[idx]
    noise = torch.randn(z0.shape, generator=gen)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(z0),), generator=gen)
    return scheduler.add_noise(z0, noise, t).to(device), t.to(device)


def _to(bank: Bank, device: torch.device) -> Bank:
    for m in bank.values():
        m.to(device)
    return bank


@torch.no_grad()
def block_errors(denoiser, space: SearchSpace, bank: Bank, batches) -> dict[tuple[str, str], float]:
    sums: dict[tuple[str, str], float] = {k: 0.0 for k in bank}
    for zt, t in batches:
        with record_slots(denoiser.unet, space) as rec:
            denoiser(zt, t)
        for (slot, choice), module in bank.items():
            args, kwargs, target = rec[slot]
            sums[(slot, choice)] += float(normalised_error(block_output(module(*args, **kwargs)), target))
    return {k: v / len(batches) for k, v in sums.items()}


def distill(teacher, latents: torch.Tensor, val_latents: torch.Tensor, out_dir: str | Path,
            config: DistillConfig = DistillConfig(), resume: bool = False) -> DistillRecord:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    acc = make_accelerator()
    device = acc.device
    denoiser, scheduler = teacher.denoiser.eval().to(device), teacher.scheduler
    for p in denoiser.parameters():
        p.requires_grad_(False)
    space = derive_search_space(denoiser.unet)
    write_artifact(out / "space.json", "tocsr.search_space", 1, space.to_dict())
    bank = _to(new_bank(space, config.seed), device)
    gen_val = torch.Generator().manual_seed(config.seed + 17)
    val_batches = [_noised(val_latents, scheduler, torch.arange(len(val_latents)), gen_val, device)
                   for _ in range(config.val_batches)]
    init_errors = block_errors(denoiser, space, bank, val_batches)
    params = [p for m in bank.values() for p in m.parameters()]
    optimizer = adamw(params, lr=config.lr)
    checkpointer = Checkpointer(out / "checkpoints")
    start = 0
    latest = checkpointer.latest() if resume else None
    if latest is not None:
        bank = _to(load_bank(space, latest / "surrogates.safetensors"), device)
        params = [p for m in bank.values() for p in m.parameters()]
        optimizer = adamw(params, lr=config.lr)
        state = load_optimizer(latest / "optimizer.pt", optimizer)
        init_errors = {tuple(k.split("|")): v for k, v in state["init_errors"].items()}
        start = int(checkpointer.latest_meta()["step"])
    for m in bank.values():
        m.train()
    # Killed after the last checkpoint: no step runs on restart; report the loss that checkpoint recorded.
    loss = torch.tensor(float(checkpointer.latest_meta()["loss"]) if start else float("nan"))
    with progress("distill/surrogates", config.steps, start) as bar:
        for step in range(start, config.steps):
            lr = config.lr * 0.5 * (1 + np.cos(np.pi * step / config.steps))
            for g in optimizer.param_groups:
                g["lr"] = lr
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            idx = torch.randint(0, len(latents), (config.batch,), generator=gen)
            zt, t = _noised(latents, scheduler, idx, gen, device)
            with acc.autocast():
                with torch.no_grad(), record_slots(denoiser.unet, space) as rec:
                    denoiser(zt, t)
                loss = sum(normalised_error(block_output(module(*rec[slot][0], **rec[slot][1])), rec[slot][2])
                           for (slot, _), module in bank.items())
            check_finite(loss, step, checkpointer)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1, loss_per_block=loss.item() / len(bank))
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                def write(d: Path) -> None:
                    save_bank(bank, d / "surrogates.safetensors", space)
                    save_optimizer(d / "optimizer.pt", optimizer,
                                   {"init_errors": {"|".join(k): v for k, v in init_errors.items()}})

                checkpointer.save(step + 1, write, {"loss": loss.item()})
    for m in bank.values():
        m.eval()
    trained_errors = block_errors(denoiser, space, bank, val_batches)
    param_counts = {k: sum(p.numel() for p in m.parameters()) for k, m in bank.items()}
    table = FidelityTable(space.space_id, {k: {"init": init_errors[k], "trained": trained_errors[k],
                                               "params": param_counts[k]} for k in bank})
    save_bank(bank, out / "surrogates.safetensors", space)
    distill_s = time.perf_counter() - t0

    evaluator = CandidateFidelity(denoiser, space, bank, scheduler, val_latents, device=device)
    rng = __import__("random").Random(config.seed)
    specs = [space.sample_mixed(rng) for _ in range(config.spearman_candidates)]
    whole = [evaluator.evaluate(s) for s in specs]
    summed = [table.sum_of_errors(s) for s in specs]
    from scipy.stats import spearmanr

    record = DistillRecord(
        teacher_folder=str(teacher.folder), space_id=space.space_id, slots=len(space.slots), surrogates=len(bank),
        config=config, distill_s=distill_s, final_loss=float(loss.item()), table=table,
        all_teacher_error=evaluator.evaluate(space.all_teacher()),
        candidates=tuple(CandidateCheck(s.key, w, b) for s, w, b in zip(specs, whole, summed, strict=True)),
        spearman_vs_sum_of_block_errors=float(spearmanr(whole, summed).statistic))
    record.save(out, environment())
    write_artifact(out / "fidelity_table.json", "tocsr.fidelity_table", 1, table.to_dict())
    return record


def load_surrogates(folder: str | Path, space: SearchSpace) -> tuple[Bank, FidelityTable]:
    from tocsr.core.artifacts import read_artifact

    root = Path(folder)
    table = FidelityTable.from_dict(read_artifact(root / "fidelity_table.json", "tocsr.fidelity_table", 1))
    return load_bank(space, root / "surrogates.safetensors"), table

