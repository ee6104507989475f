"""What `--model` names: a built-in workload, a diffusers config, or a user factory.

A workload is a module plus the example inputs of one inference at the profile's batch and size.
`--model` accepts:
  * a built-in name (`list_workloads()`), e.g. `unet-tiny`;
  * a diffusers model config: a `config.json` file or a folder holding one. The model is built from
    the config with random weights: cost does not depend on weight values;
  * a TOC-SR model folder (`tocsr sr --out`, a run's `sr/<arch>/`, an `sr_pd` variant): the one-step call
    `tocsr upscale` makes on one tile, LR image in and HR image out, with its own trained parts;
  * an SR checkpoint spandrel recognises (.pth, .safetensors);
  * `path/to/file.py:factory` or `package.module:factory`. The factory takes the `DeviceProfile`
    (or nothing) and returns `(module, example_inputs)`, where example_inputs is a tuple of
    positional inputs, or a dict of keyword inputs, or `(args_tuple, kwargs_dict)`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.profile import DeviceProfile
from tocsr.core.errors import ConfigError, TocsrError


class WorkloadError(TocsrError):
    """The model reference could not be resolved, or the user's factory failed."""


@dataclass
class Workload:
    name: str
    module: nn.Module
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


WorkloadFactory = Callable[[DeviceProfile], Workload]
_REGISTRY: dict[str, tuple[WorkloadFactory, str]] = {}


def register_workload(name: str, description: str) -> Callable[[WorkloadFactory], WorkloadFactory]:
    def deco(fn: WorkloadFactory) -> WorkloadFactory:
        if name in _REGISTRY:
            raise ValueError(f"workload {name!r} is already registered")
        _REGISTRY[name] = (fn, description)
        return fn
    return deco


def list_workloads() -> dict[str, str]:
    return {name: desc for name, (_, desc) in sorted(_REGISTRY.items())}


def _unet_workload(preset_name: str) -> WorkloadFactory:
    def factory(profile: DeviceProfile) -> Workload:
        from tocsr.core.models.unet import build_unet_from_preset, get_unet_preset, unet_example_inputs

        preset = get_unet_preset(preset_name)
        model = build_unet_from_preset(preset_name)
        args, kwargs = unet_example_inputs(preset.config, preset.cond_tokens, profile.batch,
                                           profile.resolution.latent_px)
        return Workload(f"unet-{preset_name}", model, args, kwargs, preset.description)
    return factory


for _preset, _desc in (("tiny", "16-ch UNet, CPU preset (2.5M params)"),
                       ("base", "16-ch UNet, one-GPU preset (88M params)"),
                       ("sd21", "16-ch SD-2.1-shaped UNet (866M params), random weights")):
    register_workload(f"unet-{_preset}", _desc)(_unet_workload(_preset))


class ConvLinearAttention(nn.Module):
    """A toy module whose MACs have a closed form: conv -> tokens -> self-attention -> linear.

    MACs (batch B, C channels, H*W = N tokens, hidden D):
      conv3x3: B*N*C*C*9; q,k,v,o projections: 4*B*N*C*C; attention: 2*B*N*N*C; MLP: 2*B*N*C*D.
    """

    def __init__(self, channels: int = 32, hidden: int = 64, heads: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = self.conv(x)
        tokens = x.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        split = lambda t: t.reshape(b, h * w, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        attn = nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
        tokens = tokens + self.out(attn.transpose(1, 2).reshape(b, h * w, c))
        return tokens + self.mlp(tokens)

    @staticmethod
    def analytic_macs(batch: int, channels: int, hidden: int, height: int, width: int) -> int:
        n = height * width
        return batch * (n * channels * channels * 9 + 4 * n * channels * channels
                        + 2 * n * n * channels + 2 * n * channels * hidden)


@register_workload("toy-conv-attn", "conv + linear + attention toy with a closed-form MAC count")
def _toy(profile: DeviceProfile) -> Workload:
    side = max(4, profile.resolution.latent_px)
    module = ConvLinearAttention(32, 64, 4)
    x = torch.randn(profile.batch, 32, side, side, generator=torch.Generator().manual_seed(0))
    return Workload("toy-conv-attn", module, (x,), {}, "conv + linear + attention")


def _normalise_inputs(inputs: Any, ref: str) -> tuple[tuple, dict[str, Any]]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[0], tuple) and isinstance(inputs[1], dict):
        return inputs[0], dict(inputs[1])
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise WorkloadError(f"{ref}: example_inputs is a {type(inputs).__name__}; expected a tensor, a tuple of "
                        "inputs, a dict of keyword inputs, or (args_tuple, kwargs_dict)")


def _load_factory(ref: str) -> Callable[..., Any]:
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise WorkloadError(f"{ref}: file {path} not found")
        spec = importlib.util.spec_from_file_location(f"_tocsr_user_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise WorkloadError(f"{ref}: cannot import {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as err:
            raise WorkloadError(f"{ref}: importing {path} failed: {type(err).__name__}: {err}") from err
    else:
        try:
            mod = importlib.import_module(target)
        except ImportError as err:
            raise WorkloadError(f"{ref}: cannot import module {target!r}: {err}") from err
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise WorkloadError(f"{ref}: {target} has no callable named {attr!r}")
    return fn


def _from_factory(ref: str, profile: DeviceProfile) -> Workload:
    fn = _load_factory(ref)
    try:
        takes_profile = len(inspect.signature(fn).parameters) >= 1
    except (TypeError, ValueError):
        takes_profile = False
    try:
        result = fn(profile) if takes_profile else fn()
    except Exception as err:  # the user's own code: report its message, keep the chain for --debug
        raise WorkloadError(f"{ref}: the factory raised {type(err).__name__}: {err}") from err
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module)):
        raise WorkloadError(f"{ref}: the factory returned {type(result).__name__}; expected (module, example_inputs)")
    args, kwargs = _normalise_inputs(result[1], ref)
    return Workload(ref, result[0], args, kwargs, f"factory {ref}")


def _from_diffusers_config(path: Path, profile: DeviceProfile) -> Workload:
    cfg_path = path / "config.json" if path.is_dir() else path
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WorkloadError(f"{cfg_path}: cannot read a diffusers config: {err}") from None
    class_name = config.get("_class_name")
    import diffusers

    cls = getattr(diffusers, str(class_name), None)
    if cls is None or not hasattr(cls, "from_config"):
        raise WorkloadError(f"{cfg_path}: _class_name = {class_name!r}: expected a diffusers model class "
                            "such as UNet2DConditionModel or AutoencoderKL")
    model = cls.from_config(config)
    if class_name in ("UNet2DConditionModel",):
        from tocsr.core.models.unet import unet_example_inputs

        tokens = int(config.get("tocsr_cond_tokens", 77 if config.get("cross_attention_dim", 0) >= 768 else 1))
        args, kwargs = unet_example_inputs(config, tokens, profile.batch, profile.resolution.latent_px)
    elif class_name in ("UNet2DModel",):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(profile.batch, config.get("in_channels", 3), profile.resolution.latent_px,
                        profile.resolution.latent_px, generator=gen)
        args, kwargs = (x, torch.full((profile.batch,), 500)), {"return_dict": False}
    elif class_name in ("AutoencoderKL", "AutoencoderTiny"):
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(profile.batch, 3, profile.resolution.output_px, profile.resolution.output_px, generator=gen) * 2 - 1
        args, kwargs = (x,), {"return_dict": False}
    else:
        raise WorkloadError(f"{cfg_path}: no example inputs are known for {class_name}; wrap it in a "
                            "`file.py:factory` returning (module, example_inputs)")
    return Workload(str(path), model, args, kwargs, f"diffusers {class_name} from config (random weights)")


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


def _from_checkpoint(path: Path, profile: DeviceProfile) -> Workload:
    """A pretrained SR checkpoint (any architecture spandrel recognises) on an LR image of the profile's
    input size, in [0, 1] as those models take it."""
    from tocsr.core.baselines import load_external_checkpoint

    model, scale = load_external_checkpoint(path)
    side = profile.resolution.input_px
    x = torch.rand(profile.batch, 3, side, side, generator=torch.Generator().manual_seed(0))
    return Workload(str(path), model, (x,), {}, f"SR checkpoint {type(model).__name__} x{scale} (its own weights)")


def _from_sr_folder(path: Path, profile: DeviceProfile) -> Workload:
    """A TOC-SR model folder as `tocsr upscale` loads it (TOCSRPipeline.from_pretrained), called on one LR tile of the
    profile's input size in [-1, 1]: the whole deployed call, the parts it deploys and a router where it routes."""
    from tocsr.core.sr.info import SRModelInfo
    from tocsr.core.sr.pipeline import TOCSRPipeline

    info = SRModelInfo.load(path)
    model = TOCSRPipeline.from_pretrained(path).model.eval()
    side = profile.resolution.input_px
    x = torch.rand(profile.batch, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return Workload(str(path), model, (x,), {},
                    f"TOC-SR one-step x{info.scale}, backbone {info.arch.key}, encoder {info.encoder}, "
                    f"decoder {info.decoder} (its own weights)")


def resolve_workload(ref: str, profile: DeviceProfile) -> Workload:
    """Turn a `--model` string into a Workload at the profile's batch and resolution.

    The global RNG is seeded first, so every run measures the same weights: on CPUs, values
    decide whether subnormal floats appear, and those are many times slower.
    """
    torch.manual_seed(0)
    if ref in _REGISTRY:
        return _REGISTRY[ref][0](profile)
    from tocsr.core.sr.info import SRModelInfo

    path = Path(ref)
    if path.is_dir() and (path / SRModelInfo.FILE_NAME).is_file():
        return _from_sr_folder(path, profile)
    if path.suffix == ".json" or (path.is_dir() and (path / "config.json").is_file()):
        return _from_diffusers_config(path, profile)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return _from_checkpoint(path, profile)
    if ":" in ref:
        return _from_factory(ref, profile)
    raise ConfigError(f"--model {ref!r}: not a built-in workload ({', '.join(list_workloads())}), "
                      "not a TOC-SR model folder (sr.json), not a diffusers config.json or folder, not an SR checkpoint (.pth, .safetensors) and not "
                      "'file.py:factory' / 'module:factory'")
