"""Training the cheaper pipeline parts (tocsr.core.models.parts) to stand in for the autoencoder's own.

* The LR encoder regresses, in the raw latent units of `raw_latent_mse` on the SR stage's pairs (both
  degradations), either what the KL encoder gives for the bicubic upscale of the same LR crop (`encoder_target`
  "upscale": a stand-in for that path, noise and blur included) or what it gives for the HR crop ("hr": the
  encoder restores, as a pixel-space SR network does, and the student starts from its estimate).
* The tiny decoder regresses the KL decoder's image of the HR crop's latent (distillation: it learns the
  decoder, not the photographs, so what it gives up is measured against the part it replaces).

Each part's fidelity is the PSNR-Y of what comes out through it against what comes out through the part it
replaces, on validation crops the training never saw: for the encoder decode(LR encoder(LR)) against
decode(KL encoder(bicubic(LR))), both with the KL decoder; for the decoder tiny(z) against KL decoder(z).
Their PSNR-Y against the HR crops is kept beside it (the autoencoder's own ceiling on that path).

Both train on the accelerator `make_accelerator` picks (bf16 autocast on CUDA); crops are cut and degraded on
the CPU from seeded generators, the same on either, and the least-squares starts are solved on the CPU in
float64. Fidelity is scored in fp32.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from tocsr.core.artifacts import FolderRecord
from tocsr.core.data import Photo, grid_patches
from tocsr.core.errors import ConfigError
from tocsr.core.metrics import psnr
from tocsr.core.models.autoencoder import decode_latents, encode_latents, raw_latent_mse
from tocsr.core.models.parts import LREncoder, PixelBranch, TinyDecoder
from tocsr.core.resize import bicubic_upscale
from tocsr.core.sr.data import SRPairs
from tocsr.core.sr.degradations import degrade
from tocsr.core.training import adamw, make_accelerator, progress

ENCODER_DIR, DECODER_DIR, BRANCH_DIR = "lr-encoder", "tiny-decoder", "pixel-branch"
ENCODER_TARGETS = ("upscale", "hr")


@dataclass(frozen=True)
class PartsConfig:
    steps: int = 600
    # The LR encoder's own steps (None: `steps`). Its steps are cheaper than the decoder's (the decoder's targets go
    # through the KL decoder at full resolution), and it is the part a tight budget ships (search.parts), so a
    # preset may give it more.
    encoder_steps: int | None = None
    batch: int = 8
    patch_px: int = 128                   # HR crop side; the LR crop is patch_px / scale
    lr: float = 1e-3
    encoder_width: int = 48
    encoder_blocks: int = 2
    decoder_widths: tuple[int, ...] = (48, 32, 16)
    decoder_blocks: int = 1
    val_per_image: int = 4                # validation crops per validation photograph
    linear_fit_pairs: int = 64            # training pairs the parts' linear shortcuts are fitted on first
    kinds: tuple[str, ...] = ("bicubic", "realesrgan")
    seed: int = 0
    encoder_target: str = "upscale"       # what the LR encoder regresses (module doc; ENCODER_TARGETS)
    # 0: every training photograph; N: the first N in the split's order, as SRConfig.train_photographs (a study)
    train_photographs: int = 0

    def __post_init__(self) -> None:
        if self.encoder_target not in ENCODER_TARGETS:
            raise ConfigError(f"PartsConfig.encoder_target = {self.encoder_target!r}: must be one of "
                              f"{', '.join(ENCODER_TARGETS)}")
        if self.encoder_steps is not None and self.encoder_steps < 1:
            raise ConfigError(f"PartsConfig.encoder_steps = {self.encoder_steps}: must be at least 1, or None for "
                              f"`steps` ({self.steps})")
        if self.train_photographs < 0:
            raise ConfigError(f"PartsConfig.train_photographs = {self.train_photographs}: give a number >= 0 (0: every "
                              "training photograph of the split)")
        for name in ("steps", "batch", "patch_px", "encoder_width", "val_per_image"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PartsConfig.{name} = {getattr(self, name)}: must be at least 1 (e.g. --steps 40)"
                                  if name == "steps" else f"PartsConfig.{name} = {getattr(self, name)}: must be at least 1")
        if self.patch_px % 8:
            raise ConfigError(f"PartsConfig.patch_px = {self.patch_px}: must be a multiple of the autoencoder's 8")

    @property
    def steps_of(self) -> dict[str, int]:
        """Training steps per part folder name."""
        return {ENCODER_DIR: self.steps if self.encoder_steps is None else self.encoder_steps, DECODER_DIR: self.steps}


@dataclass(frozen=True)
class PartsRecord(FolderRecord):
    """What `train_parts` left in its folder: the config, each part's parameters and per-crop fidelity."""

    FILE_NAME: ClassVar[str] = "parts.json"
    KIND: ClassVar[str] = "tocsr.sr_parts"
    SCHEMA_VERSION: ClassVar[int] = 1
    REBUILD: ClassVar[str] = "train the parts again: python -m tocsr.app.parts --run RUN --out {folder}"

    config: dict[str, Any]
    scale: int
    teacher_folder: str
    params: dict[str, int]                # lr-encoder, kl-encoder, tiny-decoder, kl-decoder
    # part -> {"through_part": [...], "through_kl": [...], "part_vs_kl": [...]}: PSNR-Y (dB) per validation crop;
    # for the encoder, crops of every degradation in `config["kinds"]` in turn
    psnr_y_db: dict[str, dict[str, list[float]]]
    train_s: dict[str, float]
    device: str
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "environment"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PartsRecord:
        return cls(dict(d["config"]), int(d["scale"]), str(d["teacher_folder"]),
                   {k: int(v) for k, v in d["params"].items()},
                   {p: {k: [float(x) for x in v] for k, v in m.items()} for p, m in d["psnr_y_db"].items()},
                   {k: float(v) for k, v in d["train_s"].items()}, str(d["device"]), dict(d.get("environment", {})))


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _pair_batch(pairs: SRPairs, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `step`: the HR crops and their LR crops side by side, (B, 3, P, P) and (B, 3, P/s, P/s)."""
    items = [pairs[step * batch + i] for i in range(batch)]
    return torch.stack([h for h, _ in items]), torch.stack([lr for _, lr in items])


def _hr_batch(pairs: SRPairs, step: int, batch: int) -> torch.Tensor:
    """Batch `step`'s HR crops alone: the decoder never sees an LR image, so none is degraded for it."""
    return torch.stack([pairs.hr(step * batch + i) for i in range(batch)])


def _fit(name: str, part: torch.nn.Module, loss_of, batch_of, cfg: PartsConfig, acc) -> float:
    """Adam with a cosine schedule over the part's steps (`loss_of(batch_of(step))` under the accelerator's
    autocast); returns the seconds."""
    t0 = time.perf_counter()
    steps = cfg.steps_of[name]
    opt = adamw(part.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    part.train()
    with progress(f"parts/{name}", steps) as bar:
        for step in range(steps):
            with acc.autocast():
                loss = loss_of(batch_of(step)).float()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1, loss=float(loss.detach()))
    part.eval()
    return time.perf_counter() - t0


def _val_pairs(val: list[Photo], cfg: PartsConfig, scale: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(HR crops, LR crops) of every degradation in turn; the same crops and draws every time."""
    hr = grid_patches(val, cfg.patch_px, cfg.val_per_image)
    out = []
    for k, kind in enumerate(cfg.kinds):
        gen = torch.Generator().manual_seed(cfg.seed * 7_919 + 104_729 + k)
        out.append((hr, degrade((hr + 1) / 2, scale, kind, gen) * 2 - 1))
    return out


@torch.no_grad()
def part_fidelity(autoencoder, encoder: LREncoder, decoder: TinyDecoder, val: list[Photo], cfg: PartsConfig,
                  scale: int) -> dict[str, dict[str, list[float]]]:
    """PSNR-Y per validation crop through each part and through the KL part it replaces (module doc)."""
    dev = next(encoder.parameters()).device
    enc = {"through_part": [], "through_kl": [], "part_vs_kl": []}
    for hr, lr in _val_pairs(val, cfg, scale):
        lr = lr.to(dev)
        kl = decode_latents(autoencoder, encode_latents(autoencoder, bicubic_upscale(lr, scale))).clamp(-1, 1).cpu()
        mine = decode_latents(autoencoder, encoder(lr)).clamp(-1, 1).cpu()
        enc["through_part"] += psnr(mine, hr, y_channel=True).tolist()
        enc["through_kl"] += psnr(kl, hr, y_channel=True).tolist()
        enc["part_vs_kl"] += psnr(mine, kl, y_channel=True).tolist()
    hr = _val_pairs(val, cfg, scale)[0][0]
    z = encode_latents(autoencoder, hr.to(dev))
    kl = decode_latents(autoencoder, z).clamp(-1, 1).cpu()
    mine = decoder(z).clamp(-1, 1).cpu()
    dec = {"through_part": psnr(mine, hr, y_channel=True).tolist(), "through_kl": psnr(kl, hr, y_channel=True).tolist(),
           "part_vs_kl": psnr(mine, kl, y_channel=True).tolist()}
    return {ENCODER_DIR: enc, DECODER_DIR: dec}


@torch.no_grad()
def fit_linear(conv: torch.nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> None:
    """Set a 1x1 convolution to the least-squares map from x (B, Cin, H, W) to y (B, Cout, H, W) (solved on the
    CPU in float64, wherever the tensors are)."""
    a = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).double().cpu()
    a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], dim=1)
    b = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]).double().cpu()
    sol = torch.linalg.lstsq(a, b).solution
    conv.weight.copy_(sol[:-1].T.reshape(conv.weight.shape).to(conv.weight))
    conv.bias.copy_(sol[-1].to(conv.bias))


def encoder_target(ae, hr: torch.Tensor, lr: torch.Tensor, scale: int, target: str) -> torch.Tensor:
    """The latent the LR encoder regresses for the pair (hr, lr) (PartsConfig.encoder_target)."""
    with torch.no_grad():
        return encode_latents(ae, hr if target == "hr" else bicubic_upscale(lr, scale))


@torch.no_grad()
def start_linear(encoder: LREncoder, decoder: TinyDecoder, ae, pairs: SRPairs, scale: int, n: int,
                 target: str = "upscale") -> None:
    """Both parts start as the best linear map to their targets (their shortcuts fitted by least squares on `n`
    training pairs, their convolutional paths silent), as the tiny autoencoder's shortcuts start from PCA: from
    random weights, a few hundred steps on a CPU do not reach it."""
    dev = next(encoder.parameters()).device
    hr, lr = (t.to(dev) for t in _pair_batch(pairs, 0, n))
    fit_linear(encoder.shortcut[1], encoder.shortcut[0](lr), encoder_target(ae, hr, lr, scale, target))
    z = encode_latents(ae, hr)
    fit_linear(decoder.shortcut[0], z, F.pixel_unshuffle(decode_latents(ae, z), decoder.config.vae_factor))
    for net in (encoder.net, decoder.net):
        net[-1].weight.zero_()
        net[-1].bias.zero_()


def train_parts(teacher, train: list[Photo], val: list[Photo], out_dir: str | Path, cfg: PartsConfig = PartsConfig(),
                scale: int = 4) -> PartsRecord:
    """Train the LR encoder and the tiny decoder against `teacher.autoencoder` (frozen) on crops of `train`,
    score them on crops of `val`, and save both (`save_pretrained`) and their record into `out_dir`."""
    out = Path(out_dir)
    acc = make_accelerator()
    dev = acc.device
    ae = teacher.autoencoder.eval().requires_grad_(False).to(dev)
    torch.manual_seed(cfg.seed)
    encoder = LREncoder(scale=scale, width=cfg.encoder_width, blocks=cfg.encoder_blocks).to(dev)
    decoder = TinyDecoder(widths=cfg.decoder_widths, blocks=cfg.decoder_blocks).to(dev)
    pairs = SRPairs(train, cfg.patch_px, scale, max(cfg.steps_of.values()) * cfg.batch, cfg.seed, cfg.kinds)
    start_linear(encoder, decoder, ae, pairs, scale, min(len(pairs), cfg.linear_fit_pairs), cfg.encoder_target)

    def encoder_loss(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        hr, lr = batch
        return raw_latent_mse(ae, encoder(lr), encoder_target(ae, hr, lr, scale, cfg.encoder_target))

    def decoder_loss(hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z = encode_latents(ae, hr)
            target = decode_latents(ae, z)
        return (decoder(z) - target).square().mean()

    def pair_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        hr, lr = _pair_batch(pairs, step, cfg.batch)
        return hr.to(dev), lr.to(dev)

    train_s = {ENCODER_DIR: _fit(ENCODER_DIR, encoder, encoder_loss, pair_batch, cfg, acc),
               DECODER_DIR: _fit(DECODER_DIR, decoder, decoder_loss,
                                 lambda i: _hr_batch(pairs, i, cfg.batch).to(dev), cfg, acc)}
    encoder.save_pretrained(out / ENCODER_DIR)
    decoder.save_pretrained(out / DECODER_DIR)
    params = {ENCODER_DIR: _params(encoder), "kl-encoder": _params(ae.encoder),
              DECODER_DIR: _params(decoder), "kl-decoder": _params(ae.decoder)}
    config = json.loads(json.dumps(dataclasses.asdict(cfg)))      # as it reads back: tuples become lists
    return PartsRecord(config, scale, str(teacher.folder), params,
                       part_fidelity(ae, encoder, decoder, val, cfg, scale), train_s, str(dev))


def load_parts(folder: str | Path) -> tuple[LREncoder, TinyDecoder, PartsRecord]:
    root = Path(folder)
    record = PartsRecord.load(root)
    return (LREncoder.from_pretrained(root / ENCODER_DIR).eval(), TinyDecoder.from_pretrained(root / DECODER_DIR).eval(),
            record)


def save_part(part, folder: Path) -> None:
    """Save a deployed part into `folder`, or {degradation: part} (each student's own: SRConfig.own_parts) into
    `folder/<degradation>/`; None saves nothing."""
    if isinstance(part, dict):
        for degradation, m in part.items():
            m.save_pretrained(folder / degradation)
    elif part is not None:
        part.save_pretrained(folder)


def _deployed_part(sr_dir: str | Path, what: str, kind: str, folder_name: str, cls, degradations: tuple[str, ...]):
    """The stand-in part `folder_name` an SR model folder deploys, {degradation: part} where each of its students
    (`degradations`) has its own (`save_part`), or None for the autoencoder's own ("kl")."""
    if kind == "kl":
        return None
    folder = Path(sr_dir) / folder_name
    expected = "tiny" if cls is TinyDecoder else "lr"
    if kind == expected and (folder / "config.json").is_file():
        return cls.from_pretrained(folder).eval()
    if kind == expected and degradations and all((folder / d / "config.json").is_file() for d in degradations):
        return {d: cls.from_pretrained(folder / d).eval() for d in degradations}
    raise ConfigError(f"{sr_dir}: {what} {kind!r} " + (f"has no folder {folder_name}" if kind == expected else
                                                      f"is not 'kl' or {expected!r}")
                      + (f" (nor one per student: {', '.join(degradations)})" if degradations else "")
                      + "; train the SR model again with `tocsr sr`")


def deployed_decoder(sr_dir: str | Path, kind: str, degradations: tuple[str, ...] = ()) -> TinyDecoder | dict | None:
    """The decoder an SR model folder deploys (tocsr.core.sr.info.SRModelInfo.decoder): None for the
    autoencoder's own ("kl"), its `tiny-decoder/` for "tiny", or {degradation: decoder} from `tiny-decoder/<d>/`
    where each of its students (`degradations`) trained its own."""
    return _deployed_part(sr_dir, "decoder", kind, DECODER_DIR, TinyDecoder, degradations)


def deployed_encoder(sr_dir: str | Path, kind: str, degradations: tuple[str, ...] = ()) -> LREncoder | dict | None:
    """The encoder an SR model folder deploys (tocsr.core.sr.info.SRModelInfo.encoder): None for bicubic + the
    autoencoder's encoder ("kl"), its `lr-encoder/` for "lr", or {degradation: encoder} as `deployed_decoder`."""
    return _deployed_part(sr_dir, "encoder", kind, ENCODER_DIR, LREncoder, degradations)


def deployed_branch(sr_dir: str | Path, width: int) -> PixelBranch | None:
    """The pixel branch an SR model folder deploys beside its latent path (SRConfig.pixel_branch_width, `width`): its
    `pixel-branch/`, or None where the width is 0 (no branch)."""
    if width == 0:
        return None
    folder = Path(sr_dir) / BRANCH_DIR
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{sr_dir}: its config has a pixel branch (pixel_branch_width = {width}) but the folder has "
                          f"no {BRANCH_DIR}/; train the SR model again with `tocsr sr`")
    return PixelBranch.from_pretrained(folder).eval()
