"""Torch implementations of what cost tables and the choice of a candidate are measured through.

`TorchProbe` is the `bench.costtable.CostProbe` of a real device: surrogate blocks from a bank are
swapped into one live teacher UNet (nothing is rebuilt between candidates), and the reference
workload is a separate copy of the teacher, so it stays the teacher while candidates are swapped.

`DeployedCandidateMeter` measures a candidate as it ships (built with its trained weights), paired
with the same reference, for the re-measurement that decides which candidate is chosen.

`TorchPipelineProbe` and `DeployedPipelineMeter` do the same for the whole one-step SR call (LR image in,
SR image out), for profiles whose budgets bound the pipeline (bench.pipeline).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping

import torch
from torch import nn

from bench.counting import count_macs, count_params
from bench.measure import (
    DTYPES,
    Measurement,
    cast,
    device_name,
    measure_workload,
    prepare_callable,
    resolve_device,
)
from bench.memory import measure_peak, weights_mib
from bench.pipeline import DECODER_PARTS, ENCODER_PARTS
from bench.predicted import RooflineClock, predicted_device_name
from bench.profile import DeviceProfile
from bench.timing import Clock
from bench.workloads import Workload
from tocsr.core.assembly import ModuleSwapper, build_unet, load_surrogate_weights
from tocsr.core.models.unet import unet_example_inputs
from tocsr.core.space import ArchSpec, SearchSpace

# The reference a candidate is timed beside when it is judged against a budget that is a multiple of the teacher as
# shipped (DeployedPipelineMeter.measure_against_shipped).
SHIPPED_REFERENCE = "reference: the teacher as shipped (teacher backbone, the autoencoder's parts)"


def teacher_inputs(teacher, profile: DeviceProfile) -> tuple[tuple, dict]:
    """(args, kwargs) of one UNet call of `teacher` (a loaded tocsr.core.teacher Teacher) at the profile's
    batch and latent size: what cost tables, candidates and the reference are measured on."""
    cfg = dict(teacher.unet.config)
    tokens = int(teacher.denoiser.condition.config.cond_tokens)
    return unet_example_inputs(cfg, tokens, profile.batch, profile.resolution.latent_px)


def teacher_reference(teacher, profile: DeviceProfile) -> Workload:
    """The teacher's UNet as the reference workload every compared latency is paired with."""
    args, kwargs = teacher_inputs(teacher, profile)
    return Workload("reference: teacher UNet", teacher.unet, args, kwargs)


def capture_slot_inputs(unet: nn.Module, space: SearchSpace, args: tuple, kwargs: dict) -> dict[str, tuple[tuple, dict]]:
    """The (args, kwargs) each slot's block receives during one teacher forward pass."""
    captured: dict[str, tuple[tuple, dict]] = {}
    hooks = []
    for slot in space.slots:
        def hook(module, a, k, name=slot.name):
            captured[name] = (tuple(x.detach().clone() if isinstance(x, torch.Tensor) else x for x in a),
                              {kk: v.detach().clone() if isinstance(v, torch.Tensor) else v for kk, v in k.items()})
        hooks.append(unet.get_submodule(slot.module_path).register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():   # not inference_mode: captured tensors may later feed training
            unet(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    missing = [s.name for s in space.slots if s.name not in captured]
    if missing:
        raise RuntimeError(f"slots never called during the forward pass: {missing[:5]}")
    return captured


def _placement(profile: DeviceProfile) -> tuple[torch.device, torch.dtype, str]:
    """(device, dtype, device name) the probes hold their modules on. A predicted device holds them on the
    CPU in fp32: only their shapes matter, and the roofline is estimated at the profile's precision."""
    if not profile.is_measured:
        return torch.device("cpu"), torch.float32, predicted_device_name(profile)
    device = resolve_device(profile)
    return device, DTYPES[profile.precision], device_name(device)


def _bytes_per_param(profile: DeviceProfile) -> int:
    return torch.tensor([], dtype=DTYPES[profile.precision]).element_size()


class TorchProbe:
    """A cost probe on the profile's device. `unet` is the teacher (any weights: cost does not depend
    on their values), `args/kwargs` one inference at the profile's size, `bank` the surrogate modules
    (tocsr.core.assembly.build_module_bank or a fresh tocsr.core.distill.bank.new_bank)."""

    clock: Clock | None = None        # perf_counter_ns on a CPU, CUDA events on a GPU (bench.timing)

    def __init__(self, space: SearchSpace, unet: nn.Module, args: tuple, kwargs: dict, profile: DeviceProfile,
                 bank: Mapping[tuple[str, str], nn.Module]):
        self.device, dtype, self.device_name = _placement(profile)
        self.mode = profile.execution_mode
        self.bytes_per_param = _bytes_per_param(profile)
        unet = nn.Module.to(unet, device=self.device, dtype=dtype).eval()
        for m in bank.values():
            nn.Module.to(m, device=self.device, dtype=dtype).eval()
        self.args, self.kwargs = cast(args, self.device, dtype), cast(kwargs, self.device, dtype)
        self.swapper = ModuleSwapper(unet, space, bank)
        self.swapper.restore()
        self.teacher = copy.deepcopy(unet)
        self.slot_inputs = capture_slot_inputs(unet, space, self.args, self.kwargs)
        self._reference = self._call(self.teacher, self.args, self.kwargs)

    def _call(self, module: nn.Module, args: tuple, kwargs: dict) -> Callable[[], object]:
        return prepare_callable(module, args, kwargs, self.mode)

    def reference(self) -> Callable[[], object]:
        return self._reference

    def block(self, slot: str, choice: str) -> Callable[[], object]:
        a, k = self.slot_inputs[slot]
        return self._call(self.swapper.module_for(slot, choice), a, k)

    def block_counts(self, slot: str, choice: str) -> tuple[int, int]:
        a, k = self.slot_inputs[slot]
        module = self.swapper.module_for(slot, choice)
        return count_params(module)["params"], count_macs(module, a, k).total_macs

    def whole_counts(self) -> tuple[int, int]:
        return count_params(self.teacher)["params"], count_macs(self.teacher, self.args, self.kwargs).total_macs

    def candidate(self, spec: ArchSpec) -> Callable[[], object]:
        return self._call(self.swapper.apply(spec), self.args, self.kwargs)

    def candidate_memory_mib(self, spec: ArchSpec) -> float:
        # Memory from an eager call, as in bench.measure.measure_workload.
        unet = self.swapper.apply(spec)
        return measure_peak(prepare_callable(unet, self.args, self.kwargs, "eager"), self.device,
                            weights_mib(unet)).peak_mib

    def candidate_params(self, spec: ArchSpec) -> int:
        return count_params(self.swapper.apply(spec))["params"]


class RooflineProbe(TorchProbe):
    """`TorchProbe` of a predicted device: every call is its roofline on the profile's device, on a virtual
    clock (bench.predicted), so `bench.costtable.measure_cost_table` builds and validates a predicted table
    with the code that measures real ones. Memory is the roofline's lower bound (weights + largest op)."""

    def __init__(self, space: SearchSpace, unet: nn.Module, args: tuple, kwargs: dict, profile: DeviceProfile,
                 bank: Mapping[tuple[str, str], nn.Module]):
        self.clock = RooflineClock(profile)
        super().__init__(space, unet, args, kwargs, profile, bank)

    def _call(self, module: nn.Module, args: tuple, kwargs: dict) -> Callable[[], object]:
        return self.clock.call(module, args, kwargs)

    def _estimate(self, spec: ArchSpec):
        return self.clock.estimate_of(spec.key, lambda: self.swapper.apply(spec), self.args, self.kwargs)

    def candidate(self, spec: ArchSpec) -> Callable[[], object]:
        return self.clock.advancer(self._estimate(spec))

    def candidate_memory_mib(self, spec: ArchSpec) -> float:
        return self._estimate(spec).memory_lower_bound_mib


def cost_probe(space: SearchSpace, unet: nn.Module, args: tuple, kwargs: dict, profile: DeviceProfile,
               bank: Mapping[tuple[str, str], nn.Module]) -> TorchProbe:
    """The cost probe of the profile's device: measured, or the roofline of a predicted one."""
    cls = TorchProbe if profile.is_measured else RooflineProbe
    return cls(space, unet, args, kwargs, profile, bank)


class DeployedCandidateMeter:
    """Measures candidates as deployed: `build(spec)` returns the model with its trained weights; each
    measurement is paired with the reference (`reference`, the teacher at the same inputs)."""

    def __init__(self, build: Callable[[ArchSpec], nn.Module], reference: nn.Module, args: tuple, kwargs: dict,
                 profile: DeviceProfile):
        self.build, self.profile = build, profile
        self.args, self.kwargs = args, kwargs
        self.reference = Workload("reference: teacher", reference, args, kwargs)

    def measure(self, spec: ArchSpec) -> Measurement:
        model = self.build(spec).eval()
        return measure_workload(Workload(f"candidate {spec.key}", model, self.args, self.kwargs), self.profile,
                                reference=self.reference)


def deployed_meter(teacher, space: SearchSpace, bank: Mapping[str, nn.Module], profile: DeviceProfile) -> DeployedCandidateMeter:
    """Candidates of `teacher`'s space built as deployed (trained surrogate weights from `bank`), paired
    with the teacher."""
    weights = {k: m.state_dict() for k, m in bank.items()}

    def build(spec: ArchSpec) -> nn.Module:
        model = build_unet(space, spec, teacher.unet)
        load_surrogate_weights(model, space, spec, weights)
        return model

    args, kwargs = teacher_inputs(teacher, profile)
    return DeployedCandidateMeter(build, teacher.unet, args, kwargs, profile)


def _pipeline_inputs(teacher, profile: DeviceProfile) -> torch.Tensor:
    """A fixed LR batch in [-1, 1] at the profile's input size (cost does not depend on the pixels)."""
    res = profile.resolution
    g = torch.Generator().manual_seed(0)
    return torch.rand(profile.batch, 3, res.input_px, res.input_px, generator=g) * 2 - 1


def pipeline_builder(teacher, space: SearchSpace, bank: Mapping, scale: int, decoder: nn.Module | None = None,
                     encoder: nn.Module | None = None) -> Callable[[ArchSpec], nn.Module]:
    """spec -> the deployed one-step SR model (tocsr.core.sr.onestep.OneStepSR) with `spec` as its backbone,
    its blocks from the teacher and `bank`, `decoder` (a TinyDecoder; None: the autoencoder's own) and `encoder`
    (an LREncoder; None: bicubic + the autoencoder's encoder): what `tocsr upscale` runs, built the way the SR
    stage builds it."""
    from tocsr.core.sr.onestep import OneStepSR
    from tocsr.core.sr.train import SRConfig, build_student

    cfg = SRConfig()

    def build(spec: ArchSpec) -> nn.Module:
        return OneStepSR(teacher.autoencoder, build_student(teacher, space, spec, bank, cfg), scale, decoder,
                         encoder=encoder).eval()

    return build


def teacher_as_shipped(teacher, space: SearchSpace, profile: DeviceProfile) -> Workload:
    """The teacher as shipped (the teacher as backbone, the autoencoder's own parts) on the profile's LR batch: what a
    `latency_vs_teacher` pipeline budget is a multiple of, as a reference workload to pair a pipeline with."""
    model = pipeline_builder(teacher, space, {}, profile.resolution.scale)(space.all_teacher())
    return Workload(SHIPPED_REFERENCE, model, (_pipeline_inputs(teacher, profile),), {})


def tiny_decoder_for_cost() -> nn.Module:
    """A TinyDecoder of the shape the parts stage trains (tocsr.core.sr.parts.PartsConfig), for timing: cost
    does not depend on its weights."""
    from tocsr.core.models.parts import TinyDecoder
    from tocsr.core.sr.parts import PartsConfig

    cfg = PartsConfig()
    torch.manual_seed(0)
    return TinyDecoder(widths=cfg.decoder_widths, blocks=cfg.decoder_blocks).eval()


def lr_encoder_for_cost(scale: int) -> nn.Module:
    """An LREncoder of the shape the parts stage trains for x`scale`, for timing (as `tiny_decoder_for_cost`)."""
    from tocsr.core.models.parts import LREncoder
    from tocsr.core.sr.parts import PartsConfig

    cfg = PartsConfig()
    torch.manual_seed(0)
    return LREncoder(scale=scale, width=cfg.encoder_width, blocks=cfg.encoder_blocks).eval()


def parts_for_cost(encoder: str, decoder: str, scale: int) -> tuple[nn.Module | None, nn.Module | None]:
    """(encoder, decoder) stand-ins of the kinds a pipeline deploys, shaped as the parts stage trains them, for
    timing where the trained parts are not at hand (a Ray node, an ONNX bundle); None for the autoencoder's own."""
    return (lr_encoder_for_cost(scale) if encoder == "lr" else None,
            tiny_decoder_for_cost() if decoder == "tiny" else None)


class TorchPipelineProbe:
    """The whole one-step SR call on the profile's device, for `bench.pipeline.measure_pipeline_parts`:
    its fixed parts (each encoder and decoder a device may deploy: bicubic + the autoencoder's encoder or the LR
    encoder, the autoencoder's decoder or the tiny one) and
    whole pipelines with a candidate backbone (the autoencoder's own parts), each paired with the same reference
    as the cost table (the teacher UNet at the latent size)."""

    clock: Clock | None = None

    def __init__(self, teacher, space: SearchSpace, bank: Mapping, profile: DeviceProfile):
        from tocsr.core.sr.onestep import LatentDecoder, LatentEncoder, PartDecoder, PartEncoder

        self.device, self.dtype, self.device_name = _placement(profile)
        self.mode = profile.execution_mode
        self.bytes_per_param = _bytes_per_param(profile)
        self.space, self.profile, self.teacher, self.bank = space, profile, teacher, bank
        scale = profile.resolution.scale
        self.build = pipeline_builder(teacher, space, bank, scale)
        self.pair = ("kl", "kl")         # the parts its whole pipelines run (`deploying`)
        self.lr = cast((_pipeline_inputs(teacher, profile),), self.device, self.dtype)
        self.encoder = nn.Module.to(LatentEncoder(copy.deepcopy(teacher.autoencoder), scale), self.device, self.dtype).eval()
        self.decoder = LatentDecoder(self.encoder.autoencoder).eval()
        self.tiny_decoder = nn.Module.to(PartDecoder(tiny_decoder_for_cost()), self.device, self.dtype).eval()
        self.lr_encoder = nn.Module.to(PartEncoder(lr_encoder_for_cost(scale)), self.device, self.dtype).eval()
        with torch.inference_mode():
            self.z = (self.encoder(*self.lr),)
        args, kwargs = teacher_inputs(teacher, profile)
        unet = nn.Module.to(copy.deepcopy(teacher.unet), self.device, self.dtype).eval()
        self._reference = self._call(unet, cast(args, self.device, self.dtype), cast(kwargs, self.device, self.dtype))
        self._built: tuple[str, nn.Module] | None = None

    def _call(self, module: nn.Module, args: tuple, kwargs: dict) -> Callable[[], object]:
        return prepare_callable(module, args, kwargs, self.mode)

    def reference(self) -> Callable[[], object]:
        return self._reference

    def part_modules(self) -> dict[str, tuple[nn.Module, tuple, int]]:
        """name (bench.pipeline.ENCODER_PARTS, DECODER_PARTS) -> (module, its inputs, its parameters)."""
        return {ENCODER_PARTS["kl"]: (self.encoder, self.lr, count_params(self.encoder.autoencoder.encoder)["params"]),
                ENCODER_PARTS["lr"]: (self.lr_encoder, self.lr, count_params(self.lr_encoder)["params"]),
                DECODER_PARTS["kl"]: (self.decoder, self.z, count_params(self.decoder.autoencoder.decoder)["params"]),
                DECODER_PARTS["tiny"]: (self.tiny_decoder, self.z, count_params(self.tiny_decoder)["params"])}

    def parts(self) -> dict[str, tuple[Callable[[], object], int]]:
        return {name: (self._call(module, inputs, {}), params)
                for name, (module, inputs, params) in self.part_modules().items()}

    def model(self, spec: ArchSpec) -> nn.Module:
        """The pipeline with `spec` as its backbone (the last one built is kept)."""
        if self._built is None or self._built[0] != spec.key:
            model = nn.Module.to(self.build(spec), self.device, self.dtype).eval()
            self._built = (spec.key, model)
        return self._built[1]

    def deploying(self, encoder: str, decoder: str) -> TorchPipelineProbe:
        """This probe with whole pipelines that run `encoder` and `decoder` (keys of bench.pipeline.ENCODER_PARTS and
        DECODER_PARTS; stand-ins of the trained parts' shapes, `parts_for_cost`). Parts and reference are shared."""
        other = copy.copy(self)
        enc, dec = parts_for_cost(encoder, decoder, self.profile.resolution.scale)
        other.build = pipeline_builder(self.teacher, self.space, self.bank, self.profile.resolution.scale, dec, enc)
        other.pair, other._built = (encoder, decoder), None
        return other

    def candidate(self, spec: ArchSpec) -> Callable[[], object]:
        return self._call(self.model(spec), self.lr, {})

    def candidate_memory_mib(self, spec: ArchSpec) -> float:
        model = self.model(spec)
        return measure_peak(prepare_callable(model, self.lr, {}, "eager"), self.device, weights_mib(model)).peak_mib

    def candidate_params(self, spec: ArchSpec) -> int:
        return count_params(self.model(spec).student.backbone)["params"]


class RooflinePipelineProbe(TorchPipelineProbe):
    """`TorchPipelineProbe` of a predicted device (see `RooflineProbe`)."""

    def __init__(self, teacher, space: SearchSpace, bank: Mapping, profile: DeviceProfile):
        self.clock = RooflineClock(profile)
        super().__init__(teacher, space, bank, profile)

    def _call(self, module: nn.Module, args: tuple, kwargs: dict) -> Callable[[], object]:
        return self.clock.call(module, args, kwargs)

    def _estimate(self, spec: ArchSpec):
        return self.clock.estimate_of(f"{spec.key} {'+'.join(self.pair)}", lambda: self.model(spec), self.lr, {})

    def candidate(self, spec: ArchSpec) -> Callable[[], object]:
        return self.clock.advancer(self._estimate(spec))

    def candidate_memory_mib(self, spec: ArchSpec) -> float:
        return self._estimate(spec).memory_lower_bound_mib


def pipeline_probe(teacher, space: SearchSpace, bank: Mapping, profile: DeviceProfile) -> TorchPipelineProbe:
    """The pipeline probe of the profile's device: measured, or the roofline of a predicted one."""
    cls = TorchPipelineProbe if profile.is_measured else RooflinePipelineProbe
    return cls(teacher, space, bank, profile)


class DeployedPipelineMeter:
    """search.selection.CandidateMeter of the whole one-step SR call: the pipeline with `spec` as its
    backbone (trained surrogate weights from `bank`), paired with the teacher UNet as every cost table is.
    The measurement's params and MACs are the backbone's (what params/GMAC budgets bound)."""

    def __init__(self, teacher, space: SearchSpace, bank: Mapping, profile: DeviceProfile,
                 decoder: nn.Module | None = None, encoder: nn.Module | None = None):
        self.profile, self.space = profile, space
        self.teacher = teacher
        self.build = pipeline_builder(teacher, space, bank, profile.resolution.scale, decoder, encoder)
        self.lr = _pipeline_inputs(teacher, profile)
        self.args, self.kwargs = teacher_inputs(teacher, profile)
        self.reference = Workload("reference: teacher", teacher.unet, self.args, self.kwargs)
        self._shipped: Workload | None = None

    def _measure(self, name: str, model: nn.Module, reference: Workload | None = None) -> Measurement:
        return measure_workload(Workload(name, model, (self.lr,), {}), self.profile,
                                reference=reference or self.reference)

    def _teacher_as_shipped(self) -> Workload:
        if self._shipped is None:
            self._shipped = teacher_as_shipped(self.teacher, self.space, self.profile)
        return self._shipped

    def measure_teacher_as_shipped(self) -> Measurement:
        """The teacher-shaped pipeline with the autoencoder's own parts, whatever decoder this meter deploys:
        what a `latency_vs_teacher` budget is a multiple of (search.selection.choose)."""
        return self._measure("pipeline teacher (autoencoder's parts)", self._teacher_as_shipped().module)

    def measure(self, spec: ArchSpec) -> Measurement:
        model = self.build(spec)
        return self._with_backbone_counts(self._measure(f"pipeline {spec.key}", model), model)

    def measure_against_shipped(self, spec: ArchSpec) -> Measurement:
        """The pipeline with `spec` as its backbone, paired with the teacher as shipped instead of the teacher UNet:
        its latency as a share of what a `latency_vs_teacher` budget is a multiple of, both sides timed in the same
        rounds (search.selection.choose judges a candidate on this)."""
        model = self.build(spec)
        return self._with_backbone_counts(
            self._measure(f"pipeline {spec.key}", model, reference=self._teacher_as_shipped()), model)

    def _with_backbone_counts(self, m: Measurement, model: nn.Module) -> Measurement:
        backbone = model.student.backbone
        args = cast(self.args, next(backbone.parameters()).device, next(backbone.parameters()).dtype)
        kwargs = cast(self.kwargs, next(backbone.parameters()).device, next(backbone.parameters()).dtype)
        return dataclasses.replace(m, params=count_params(backbone)["params"], macs=count_macs(backbone, args, kwargs),
                                   extra={**m.extra, "pipeline_params": model.params_in_call(),
                                          "pipeline_gmacs": m.macs.gmacs if m.macs else None})
