"""DegradationRouter: which of the SR stage's degradations made an LR photograph, read from the photograph alone.

Students told the degradation beat the blind one at the same steps (docs/status.md, thirty-eighth session), but a
user rarely knows what degraded a photograph. A router makes the told students usable blind: it decides once per
photograph (before any tiling; tiles routed apart would meet at seams), and the student of its answer runs.
Small on purpose: it must cost little beside one backbone call, and the cues it needs (sensor-like noise, blur,
JPEG blocks against a clean bicubic downscale) are statistics of the whole image.
"""

from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from tocsr.core.data import Photo
from tocsr.core.errors import ConfigError
from tocsr.core.metrics import psnr
from tocsr.core.sr.data import SRPairs
from tocsr.core.sr.onestep import OneStepSR
from tocsr.core.training import adamw, progress


class DegradationRouter(ModelMixin, ConfigMixin):
    """LR image in [-1, 1] (B, 3, h, w), any size -> logits over `kinds`, from statistics of the whole image (the
    list is STATISTICS), in logs, normalised by running statistics, then a linear layer. A small CNN on the pixels
    learned nothing in the steps a test affords (the cues are faint beside image content); these statistics are
    what separates them. Size-agnostic: a whole photograph is one decision.

    Noise is read where the image is flattest as well as over the whole image: strong texture (brick, foliage)
    raises a whole-image noise estimate as noise does, so a router reading only that sent clean textured
    photographs to the Real-ESRGAN student (docs/status.md, thirty-ninth session). Most photographs have some
    smooth blocks, and there sensor-like noise shows and texture does not.

    `loss_db[t][c]`: what answering c costs (dB of PSNR-Y against the right student) on an image degraded by t,
    measured by the SR stage on its students (`misroute_loss_db`). `route` picks the answer of least expected
    loss under the router's probabilities, so a costly mistake needs more evidence than a cheap one. None: the
    most probable answer."""

    @register_to_config
    def __init__(self, kinds: tuple[str, ...] = ("bicubic", "realesrgan"),
                 loss_db: tuple[tuple[float, ...], ...] | None = None):
        super().__init__()
        if len(kinds) < 2:
            raise ConfigError(f"DegradationRouter(kinds={kinds!r}): routing needs at least two degradations")
        if loss_db is not None and (len(loss_db) != len(kinds) or any(len(row) != len(kinds) for row in loss_db)):
            raise ConfigError(f"DegradationRouter: loss_db {loss_db!r} is not {len(kinds)} x {len(kinds)}, one row and "
                              f"column per degradation of {kinds!r}")
        self.kinds = tuple(kinds)
        mask = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
        lap = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
        self.register_buffer("masks", torch.stack([mask, lap])[:, None], persistent=False)
        self.norm = nn.BatchNorm1d(len(STATISTICS), affine=False)
        self.head = nn.Linear(len(STATISTICS), len(kinds))

    def statistics(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, len(STATISTICS)): the logs of the STATISTICS of each image."""
        # in fp32 whatever the module's precision: the statistics are small numbers whose logs half precision loses
        rgb = ((lr.float() + 1) / 2).clamp(0, 1)
        y = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]
        chroma = torch.stack([rgb[:, 2] - y[:, 0], rgb[:, 0] - y[:, 0]], dim=1)
        masks = self.masks.float()
        r = F.conv2d(y, masks)
        # Immerkaer's estimate: the mask cancels smooth structure; sqrt(pi/2)/6 turns its mean |response| into sigma
        residual = r[:, 0].abs() * (math.pi / 2) ** 0.5 / 6
        noise = residual.mean(dim=(1, 2))
        noise_flat = _flattest(residual)
        chroma_flat = _flattest(F.conv2d(chroma, masks[:1].expand(2, 1, 3, 3), groups=2).abs().sum(dim=1))
        lap = r[:, 1].flatten(1).std(dim=1)
        dx, dy = (y[..., :, 1:] - y[..., :, :-1]).abs(), (y[..., 1:, :] - y[..., :-1, :]).abs()
        grad = dx.mean(dim=(1, 2, 3)) + dy.mean(dim=(1, 2, 3))
        # JPEG's grid: differences across the 8 px block boundaries against those at the other seven offsets
        across = dx[..., :, 7::8].mean(dim=(1, 2, 3)) + dy[..., 7::8, :].mean(dim=(1, 2, 3))
        block = across / (grad + 1e-8)
        return torch.stack([noise, noise_flat, chroma_flat, lap, grad, block], dim=1).clamp_min(1e-8).log()

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.statistics(lr).to(self.head.weight.dtype)))

    @torch.no_grad()
    def probabilities(self, lr: torch.Tensor) -> list[dict[str, float]]:
        """Each image's probability of each degradation: what `route` weighs, kept beside its answers so that a
        reader sees how sure the router was, not only what it said."""
        p = torch.softmax(self(lr.to(self.head.weight.device)).float(), dim=1)
        return [dict(zip(self.kinds, row.tolist(), strict=True)) for row in p]

    @torch.no_grad()
    def route(self, lr: torch.Tensor) -> list[str]:
        """The degradation of each image of the batch (whole images: one decision each): the answer of least
        expected loss (`loss_db`), or the most probable one without it."""
        logits = self(lr.to(self.head.weight.device)).float()
        if self.config.loss_db is None:
            return [self.kinds[int(i)] for i in logits.argmax(dim=1)]
        expected = torch.softmax(logits, dim=1) @ torch.tensor(self.config.loss_db, device=logits.device)
        return [self.kinds[int(i)] for i in expected.argmin(dim=1)]

    def with_loss_db(self, loss_db: tuple[tuple[float, ...], ...]) -> DegradationRouter:
        """This router (same weights and running statistics) deciding by expected loss under `loss_db`."""
        routed = DegradationRouter(self.kinds, tuple(tuple(float(v) for v in row) for row in loss_db))
        routed.load_state_dict(self.state_dict())
        return routed.to(self.head.weight.device).train(self.training)


def _flattest(residual: torch.Tensor, block_px: int = 8, quantile: float = 0.1) -> torch.Tensor:
    """(B, h, w) per-pixel noise residual -> (B,): its mean over the flattest blocks (the `quantile` of the blocks'
    means), where texture adds least to it. An image smaller than one block is one block."""
    px = min(block_px, *residual.shape[-2:])
    means = F.avg_pool2d(residual[:, None], px).flatten(1)
    return torch.quantile(means, quantile, dim=1)


# what the router reads, in the order of its features
STATISTICS = ("noise", "noise_flattest", "chroma_noise_flattest", "laplacian_std", "mean_gradient", "jpeg_grid")
ROUTER_DIR = "router"          # its folder in an SR model folder (tocsr.core.sr.info)
MIN_LR_PX = 16                 # the smallest LR crop a router trains on: two JPEG blocks a side


class RoutedSR(nn.Module):
    """Students told the degradation, run blind: LR image in [-1, 1] (B, 3, h, w) -> SR image, each image of the batch
    by the network of the degradation the router reads in it. Nobody tells it the degradation (`takes_degradation`
    is false): to every caller it is one blind model, which is how the headline comparison scores it.

    Callers that tile an image (tocsr.core.sr.pipeline.TOCSRPipeline, the evaluation protocol) must not call it per
    tile, since tiles routed apart would meet at seams: they `route` the whole image once and run
    `for_degradation(answer)` on its tiles. `cost_module` is what one call runs: the router, then one network."""

    takes_degradation = False

    def __init__(self, model: OneStepSR, router: DegradationRouter):
        super().__init__()
        if not model.takes_degradation:
            raise ConfigError("RoutedSR: the model is blind (one network for every degradation), so there is nothing "
                              "to route; route a model with one student per degradation (student_per_degradation)")
        missing = sorted(set(router.kinds) - set(model.student.degradations))
        if missing:
            raise ConfigError(f"RoutedSR: the router answers {missing}, for which the model has no student (it has "
                              f"{', '.join(model.student.degradations)}); train the router on the model's degradations")
        self.model, self.router = model, router

    def route(self, lr: torch.Tensor) -> list[str]:
        """The degradation of each whole image of the batch (the router's answer)."""
        return self.router.route(lr)

    def probabilities(self, lr: torch.Tensor) -> list[dict[str, float]]:
        """The router's probability of each degradation, per whole image of the batch."""
        return self.router.probabilities(lr)

    def for_degradation(self, degradation: str | None) -> OneStepSR:
        """The model holding only the network for `degradation` (None: the model's default)."""
        return self.model.for_degradation(degradation)

    def cost_module(self) -> nn.Module:
        """What one call costs: the router's statistics on the LR image, then one network (the default's). A copy of
        the router: a measurement may move and cast what it times, and this model's router must stay as it is."""
        return RouteThenRun(copy.deepcopy(self.router), self.for_degradation(None))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        lr = lr.to(next(self.model.parameters()).device)
        kinds = self.route(lr)
        out = None
        for kind in dict.fromkeys(kinds):
            rows = torch.tensor([k == kind for k in kinds], device=lr.device)
            got = self.model(lr[rows], kind)
            out = got.new_empty((lr.shape[0], *got.shape[1:])) if out is None else out
            out[rows] = got
        return out


class RouteThenRun(nn.Module):
    """The cost of one routed call: the router's statistics, then the network it picks (timed as one workload)."""

    def __init__(self, router: DegradationRouter, model: OneStepSR):
        super().__init__()
        self.router, self.model = router, model

    def params_in_call(self) -> int:
        """The router's parameters and those the network's call runs (OneStepSR.params_in_call)."""
        return sum(p.numel() for p in self.router.parameters()) + self.model.params_in_call()

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        self.router(lr)
        return self.model(lr)


def train_router(photos: list[Photo], kinds: tuple[str, ...], scale: int, patch_px: int = 192, steps: int = 300,
                 batch: int = 16, lr: float = 1e-2, seed: int = 0) -> tuple[DegradationRouter, float]:
    """A router trained on HR crops of `photos`, each degraded by one of `kinds` (SRPairs: the SR stage's own
    degradations, mixed evenly), with cross-entropy on which made it. Returns (the router in eval mode, seconds).
    Crops larger than the student's, so that the pooled statistics are closer to a whole photograph's; where no
    photograph is that large, as large as the largest allows."""
    if steps < 1 or batch < 1:
        raise ConfigError(f"train_router: steps {steps}, batch {batch}; give positive numbers")
    t0 = time.perf_counter()
    largest = max((min(p.rgb.shape[:2]) for p in photos), default=0) // scale * scale
    if largest < MIN_LR_PX * scale:
        raise ConfigError(f"train_router: the largest of {len(photos)} training photographs is {largest} px on its "
                          f"shorter side; the router needs crops of at least {MIN_LR_PX * scale} px at x{scale}: add "
                          "larger photographs (--data)")
    patch_px = min(patch_px, largest)
    # another seed than the student's pair cache: the router sees other crops and degradation draws
    pairs = SRPairs(photos, patch_px, scale, steps * batch, seed + 7, kinds)
    index = {k: i for i, k in enumerate(kinds)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        router = DegradationRouter(kinds)
    opt = adamw(router.parameters(), lr=lr)
    router.train()
    with progress("sr/router", steps) as bar:
        for step in range(steps):
            items = range(step * batch, (step + 1) * batch)
            x = torch.stack([pairs[i][1] for i in items])
            y = torch.tensor([index[pairs.kind(i)] for i in items])
            loss = F.cross_entropy(router(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1, loss=loss.item())
    return router.eval(), time.perf_counter() - t0


@torch.no_grad()
def misroute_loss_db(model: OneStepSR, photos: list[Photo], kinds: tuple[str, ...], scale: int, patch_px: int,
                     crops: int = 16, seed: int = 0, batch: int = 8) -> tuple[tuple[float, ...], ...]:
    """loss_db[t][c]: the mean PSNR-Y (dB) the student of t gains over the student of c on crops degraded by t,
    what answering c costs on a t image (DegradationRouter.loss_db; the diagonal is 0). `crops` HR crops of
    `photos` per degradation (the SR stage gives its training photographs, so the validation ones still score the
    routed model afresh)."""
    if crops < 1:
        raise ConfigError(f"misroute_loss_db: crops = {crops}; give a positive number of crops per degradation")
    missing = sorted(set(kinds) - set(model.student.degradations))
    if missing:
        raise ConfigError(f"misroute_loss_db: the model has no student for {missing} (it has "
                          f"{', '.join(model.student.degradations)}); measure it on the model's degradations")
    device = next(model.parameters()).device
    pairs = SRPairs(photos, patch_px, scale, crops * len(kinds), seed + 11, kinds)
    loss = []
    for t in kinds:
        items = [pairs[i] for i in range(len(pairs)) if pairs.kind(i) == t]
        hr, lr = torch.stack([h for h, _ in items]), torch.stack([x for _, x in items])
        got = {c: torch.cat([psnr(model(lr[i:i + batch].to(device), c).float().cpu().clamp(-1, 1),
                                  hr[i:i + batch], y_channel=True) for i in range(0, len(lr), batch)]).mean().item()
               for c in kinds}
        loss.append(tuple(got[t] - got[c] for c in kinds))
    return tuple(loss)
