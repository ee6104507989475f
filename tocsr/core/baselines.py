"""Classical SR baselines, architecture-matched to their papers (definitions from spandrel).

Each entry builds the network with random weights (cost) or loads a checkpoint through spandrel
(quality). Inputs are images in [0, 1], (B, 3, h, w); outputs (B, 3, h*scale, w*scale).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tocsr.core.errors import ConfigError
from tocsr.core.resize import bicubic_upscale, matlab_imresize


class Interpolate(nn.Module):
    """Interpolation as a module, so it is measured like the networks. "bicubic" is MATLAB's imresize
    (the field's bicubic baseline); "bicubic-torch" is torch's kernel (a = -0.75); other names are torch
    modes."""

    def __init__(self, scale: int, mode: str = "bicubic"):
        super().__init__()
        self.scale, self.mode = scale, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bicubic":
            return matlab_imresize(x, self.scale).clamp(0, 1)
        if self.mode == "bicubic-torch":
            return bicubic_upscale(x, self.scale, 0, 1)
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode).clamp(0, 1)


class ESPCN(nn.Module):
    """ESPCN (Shi et al. 2016): three convolutions and a pixel shuffle; the efficient-CNN floor."""

    def __init__(self, scale: int, features: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, features, 5, padding=2), nn.Tanh(),
                                  nn.Conv2d(features, features // 2, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(features // 2, 3 * scale * scale, 3, padding=1))
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    build: Callable[[int, int], nn.Module]   # build(scale, input_px)
    trainable: bool = True


def _spandrel(arch: str):
    try:
        import importlib

        return importlib.import_module(f"spandrel.architectures.{arch}")
    except ImportError as err:
        raise ConfigError(f"baseline needs spandrel (pip install -c constraints.txt spandrel): {err}") from None


BASELINES: dict[str, Baseline] = {
    "bicubic": Baseline("bicubic", "bicubic interpolation (MATLAB imresize)", lambda s, px: Interpolate(s, "bicubic"),
                        trainable=False),
    "bicubic-torch": Baseline("bicubic-torch", "bicubic interpolation (torch, a = -0.75)",
                              lambda s, px: Interpolate(s, "bicubic-torch"), trainable=False),
    "espcn": Baseline("espcn", "ESPCN, efficient CNN (~0.03M params)", lambda s, px: ESPCN(s)),
    "span": Baseline("span", "SPAN (NTIRE 2024 efficient SR winner), 48 channels",
                     lambda s, px: _spandrel("SPAN").SPAN(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=s,
                                                      img_range=1.0)),
    "srvgg": Baseline("srvgg", "Real-ESRGAN compact (SRVGGNetCompact), 64 features x 16 convs",
                      lambda s, px: _spandrel("Compact").Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16,
                                                             upscale=s)),
    "rrdb": Baseline("rrdb", "RRDBNet as in Real-ESRGAN x4plus (23 blocks, 64 features, ~16.7M params)",
                     lambda s, px: _spandrel("ESRGAN").ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=s)),
    "swinir-m": Baseline("swinir-m", "SwinIR-M as in real-world SwinIR (embed 180, 6x6 blocks, window 8)",
                         lambda s, px: _spandrel("SwinIR").SwinIR(img_size=px, in_chans=3, embed_dim=180, depths=[6] * 6,
                                                              num_heads=[6] * 6, window_size=8, mlp_ratio=2.0,
                                                              upscale=s, img_range=1.0, upsampler="nearest+conv",
                                                              resi_connection="1conv", drop_path_rate=0.0)),
    "swinir-light": Baseline("swinir-light", "lightweight SwinIR (embed 60, 4x6 blocks)",
                             lambda s, px: _spandrel("SwinIR").SwinIR(img_size=px, in_chans=3, embed_dim=60,
                                                                  depths=[6] * 4, num_heads=[6] * 4, window_size=8,
                                                                  mlp_ratio=2.0, upscale=s, img_range=1.0,
                                                                  upsampler="pixelshuffledirect",
                                                                  resi_connection="1conv", drop_path_rate=0.0)),
}


def list_baselines() -> list[str]:
    return list(BASELINES)


def build_baseline(name: str, scale: int, input_px: int = 64) -> nn.Module:
    """`input_px` is the LR side the network is built for. SwinIR precomputes its shifted-window
    attention mask for that size; at other sizes it recomputes it in fp32 per call, which fails in
    bf16/fp16 and costs time, so cost measurements build it at the measured size."""
    if name not in BASELINES:
        raise ConfigError(f"baseline {name!r} does not exist; available: {', '.join(BASELINES)}")
    return BASELINES[name].build(scale, input_px)


BASELINES["rrdb-s"] = Baseline("rrdb-s", "RRDB-class network sized for CPU budgets (6 RRDB blocks, 32 features)",
                               lambda s, px: _spandrel("ESRGAN").ESRGAN(in_nc=3, out_nc=3, num_filters=32, num_blocks=6,
                                                                        scale=s))


INITS = ("he", "pytorch-default")


def he_init(model: nn.Module, output_scale: float = 0.1) -> nn.Module:
    """Kaiming-normal (fan-in, PReLU/leaky slope 0.25) weights and zero biases for every convolution, the last
    one scaled by `output_scale` so training starts near the network's own upsampling path.

    Why: with PyTorch's default init a deep plain network such as SRVGGNetCompact (18 convolutions, no
    normalisation) passes almost nothing of its input to the output, so for the first thousands of steps it
    is nearest-neighbour upsampling plus a constant, whatever it is trained on; papers that train it for
    hundreds of thousands of steps do not notice, a CPU budget of minutes does
    (reports/evidence/baseline-recipe/README.md).
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight, a=0.25, mode="fan_in", nonlinearity="leaky_relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    if convs:
        with torch.no_grad():
            convs[-1].weight.mul_(output_scale)
    return model


@dataclass(frozen=True)
class BaselineTraining:
    """How a baseline was trained: what a reader needs to judge the comparison it appears in."""

    name: str
    scale: int
    input_px: int                         # the LR side it was built for (SwinIR's window mask)
    budget_s: float | None                # the wall-clock budget it was given (None: a step budget)
    max_steps: int | None                 # a step cap on top of it (tests), None when there was none
    seconds: float                        # what it used, data preparation included
    steps: int
    batch: int
    lr: float
    head: str = "as published"            # no residual or bicubic head added to the method's own design
    loss: str = "L1"
    schedule: str = "Adam, cosine decay over the steps the budget affords (estimated after 10 steps)"
    init: str = "he"                      # one of INITS (he_init says why)
    # Where it trained: the accelerator the suite's own SR stage trains on (make_accelerator, its autocast), so
    # an equal budget in seconds is an equal budget of the same hardware.
    device: str = "cpu"

    @property
    def pairs_seen(self) -> int:
        return self.steps * self.batch


def train_baseline(name: str, photos, scale: int, budget_s: float | None = None, max_steps: int | None = None,
                   batch: int = 16, patch_px: int = 128, lr: float = 5e-4, seed: int = 0,
                   kinds: tuple[str, ...] = ("bicubic", "realesrgan"), init: str = "he",
                   evaluate: Callable[[int, float, nn.Module], None] | None = None,
                   evaluate_at_s: tuple[float, ...] = ()) -> tuple[nn.Module, BaselineTraining]:
    """Train a classical baseline from scratch, as its paper defines it, with L1 on fresh pairs from the same
    photographs and degradations as the suite's models, for `budget_s` wall-clock seconds (data preparation
    included, as it is in the suite's own training) and/or `max_steps` steps, whichever ends first. It trains on
    the accelerator the suite's SR stage uses (make_accelerator: bf16 autocast on CUDA) and returns on the CPU.

    `evaluate(step, seconds, model)` (a learning curve, tocsr.app.sr_curve) is called, in eval mode, at the first step
    boundary past each of `evaluate_at_s` seconds of training; the seconds it takes are kept off the budget's clock,
    so what is scored at x seconds is a model trained for x seconds."""
    import time

    import torch.nn.functional as F

    from tocsr.core.sr.data import SRPairs
    from tocsr.core.training import adamw, make_accelerator, progress

    if budget_s is None and max_steps is None:
        raise ConfigError(f"baseline {name!r}: give a wall-clock budget_s or max_steps, or both")
    if init not in INITS:
        raise ConfigError(f"baseline init {init!r} does not exist; available: {', '.join(INITS)}")
    torch.manual_seed(seed)
    model = build_baseline(name, scale, patch_px // scale)
    if not BASELINES[name].trainable:
        return model.eval(), BaselineTraining(name, scale, patch_px // scale, budget_s, max_steps, 0.0, 0, batch, lr,
                                              init="none")
    if init == "he":
        he_init(model)
    acc = make_accelerator()
    model.to(acc.device)
    pairs = SRPairs(photos, patch_px, scale, 2**62, seed + 11, kinds)
    opt = adamw(model.parameters(), lr=lr)
    model.train()
    planned = max_steps
    t0 = time.perf_counter()
    step = 0
    pending = sorted(evaluate_at_s) if evaluate is not None else []
    with progress(f"baseline/{name}", int(budget_s) if budget_s else int(max_steps or 0)) as bar:
        shown = 0
        while True:
            elapsed = time.perf_counter() - t0
            if pending and elapsed >= pending[0]:
                while pending and elapsed >= pending[0]:
                    pending.pop(0)
                model.eval()
                t = time.perf_counter()
                evaluate(step, elapsed, model)
                t0 += time.perf_counter() - t         # scoring is not training: off the budget's clock
                model.train()
            if (budget_s is not None and elapsed >= budget_s) or (max_steps is not None and step >= max_steps):
                break
            if step == 10 and budget_s is not None:
                # the cosine needs an end: the steps the rest of the budget affords at the pace so far
                planned = min(max_steps or 2**62, max(11, int(budget_s / (elapsed / 10))))
            frac = min(1.0, step / planned) if planned else 0.0
            for g in opt.param_groups:
                g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
            items = [pairs[i] for i in range(step * batch, (step + 1) * batch)]
            hr = ((torch.stack([h for h, _ in items]) + 1) / 2).to(acc.device)
            lr_img = ((torch.stack([x for _, x in items]) + 1) / 2).to(acc.device)
            with acc.autocast():
                loss = F.l1_loss(model(lr_img).float(), hr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            now = int(time.perf_counter() - t0) if budget_s else step
            bar.update(now - shown, loss=loss.item(), step=step)
            shown = now
    info = BaselineTraining(name, scale, patch_px // scale, budget_s, max_steps, time.perf_counter() - t0, step,
                            batch, lr, init=init, device=str(acc.device))
    return model.eval().cpu(), info


def save_baseline(model: nn.Module, info: BaselineTraining, folder) -> None:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "baseline.json").write_text(json.dumps({**asdict(info), "pairs_seen": info.pairs_seen}, indent=2))


def load_baseline(folder) -> tuple[nn.Module, dict]:
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / "baseline.json").read_text())
    if meta.get("head") != "as published":
        raise ConfigError(f"{folder}: a baseline trained by an earlier version (with a bicubic head the method does "
                          "not have); delete the folder and rerun, which trains it again")
    model = build_baseline(meta["name"], meta["scale"], meta["input_px"])
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval(), meta


def load_external_checkpoint(path) -> tuple[nn.Module, int]:
    """A user's SR checkpoint (.safetensors, .pth, .ckpt), its architecture detected by spandrel.

    The file is read here, not by spandrel: safetensors, or torch.load(weights_only=True), which
    refuses any pickle that carries code; only the resulting tensors reach spandrel.
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: checkpoint not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(p))
        except Exception as err:  # noqa: BLE001  safetensors raises several types for broken files
            raise ConfigError(f"{p}: not a readable safetensors file ({type(err).__name__}: {err})") from None
    else:
        import pickle

        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ConfigError(f"{p}: refused: the checkpoint contains pickled code or objects other than tensors "
                              f"({str(err).splitlines()[0][:160]}); convert it to safetensors from a trusted "
                              "environment") from None
        except (RuntimeError, EOFError, OSError) as err:
            raise ConfigError(f"{p}: cannot read the checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{p}: expected a state dict of tensors")
    try:
        from spandrel import ModelLoader
    except ImportError:
        raise ConfigError("loading external checkpoints needs spandrel (pip install -c constraints.txt spandrel)") from None
    try:
        descriptor = ModelLoader().load_from_state_dict(state)
    except Exception as err:  # noqa: BLE001  spandrel raises its own types for unknown architectures
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(f"{p}: spandrel does not recognise this architecture ({type(err).__name__}: "
                          f"{first[:200]})") from None
    return descriptor.model.eval(), int(descriptor.scale)
