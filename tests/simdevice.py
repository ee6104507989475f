"""A simulated device with known costs whose speed the test controls.

Time is virtual: every call advances the device's clock by its cost times the current slowdown (a
function of virtual time the test sets), with seeded jitter and occasional bursts. bench.timing reads
that clock, so the real timing, pairing, fitting, validation and selection code runs in milliseconds
on a device whose truth is known.

The truth: a block alone costs `block_ms[(slot, choice)]`; a whole candidate costs
`fixed_ms + sum_g overlap[g] * (block sum of group g)` (g = the slot's kind), which is what real
devices do (a block inside the model overlaps with its neighbours), so the cost table's correction
has something to fit.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Callable

import torch

from bench.measure import Measurement
from bench.memory import MemoryStats
from bench.profile import DeviceProfile
from bench.timing import measure_paired
from tocsr.core.space import TEACHER, ArchSpec, SearchSpace

SIM_PROFILE_YAML = """
schema_version: 2
name: sim
device: {kind: cpu, threads: 2}
precision: fp32
resolution: {output_px: 128, scale: 4, vae_factor: 8}
timing: {warmup_min_iters: 2, warmup_max_iters: 10, repeats: 16, percentile: 90, max_cv: 0.05, max_retries: 1}
budgets: {latency_vs_teacher: 0.5, peak_memory_mib: 4096, scope: backbone}
"""


class SimulatedDevice:
    def __init__(self, space: SearchSpace, seed: int = 0, jitter: float = 0.02, burst_prob: float = 0.01,
                 fixed_ms: float = 1.5, overlap: dict[str, float] | None = None, interaction: float = 0.0):
        rng = random.Random(seed)
        self.space, self.jitter, self.burst_prob = space, jitter, burst_prob
        self.fixed_ms = fixed_ms
        self.overlap = overlap or {"resnet": 0.9, "attention": 0.8}
        self.interaction = interaction       # per-candidate deviation from additivity (not learnable)
        self.block_ms: dict[tuple[str, str], float] = {}
        self.params: dict[tuple[str, str], int] = {}
        for slot in space.slots:
            teacher_ms = rng.uniform(0.3, 0.8) if slot.kind == "resnet" else rng.uniform(0.4, 1.2)
            for choice in slot.choices:
                share = 1.0 if choice == TEACHER else rng.uniform(0.02, 0.7)
                self.block_ms[(slot.name, choice)] = teacher_ms * share
                self.params[(slot.name, choice)] = int(60_000 * share)
        self.slowdown: Callable[[float], float] = lambda t_s: 1.0
        self.t_ns = 0
        self.calls = 0
        self._rng = random.Random(seed + 1)

    # the device's clock and work
    def clock(self) -> int:
        return self.t_ns

    def now_s(self) -> float:
        return self.t_ns / 1e9

    def spend(self, ms: float) -> None:
        self.calls += 1
        factor = self.slowdown(self.now_s()) * max(0.5, 1 + self.jitter * self._rng.gauss(0, 1))
        if self._rng.random() < self.burst_prob:
            factor *= 3.0                     # a neighbour's burst
        self.t_ns += int(ms * factor * 1e6)

    # the truth at speed 1
    def true_ms(self, spec: ArchSpec) -> float:
        groups: dict[str, float] = {}
        for slot, choice in spec.items():
            kind = self.space.slot(slot).kind
            groups[kind] = groups.get(kind, 0.0) + self.block_ms[(slot, choice)]
        ms = self.fixed_ms + sum(self.overlap[k] * v for k, v in groups.items())
        if self.interaction:
            h = int(hashlib.sha256(spec.key.encode()).hexdigest()[:8], 16) / 16**8
            ms *= 1 + self.interaction * (2 * h - 1)
        return ms

    def true_ratio(self, spec: ArchSpec) -> float:
        return self.true_ms(spec) / self.true_ms(self.space.all_teacher())

    def candidate_params(self, spec: ArchSpec) -> int:
        return 100_000 + sum(self.params[k] for k in spec.items())


class SimProbe:
    """bench.costtable.CostProbe on a SimulatedDevice."""

    device = torch.device("cpu")
    device_name = "simulated device"
    bytes_per_param = 4

    def __init__(self, sim: SimulatedDevice):
        self.sim = sim
        self.clock = sim.clock
        # > 1: the reference runs that much faster than the rest of the machine's work would predict (a speed
        # change that moves the reference by another factor than the candidates: every ratio moves one way)
        self.reference_speedup = 1.0

    def reference(self):
        return lambda: self.sim.spend(self.sim.true_ms(self.sim.space.all_teacher()) / self.reference_speedup)

    def block(self, slot, choice):
        ms = self.sim.block_ms[(slot, choice)]
        return lambda: self.sim.spend(ms)

    def block_counts(self, slot, choice):
        return self.sim.params[(slot, choice)], 1000 * self.sim.params[(slot, choice)]

    def whole_counts(self):
        return self.sim.candidate_params(self.sim.space.all_teacher()), 0

    def candidate(self, spec):
        ms = self.sim.true_ms(spec)
        return lambda: self.sim.spend(ms)

    def candidate_memory_mib(self, spec):
        return self.candidate_params(spec) * 4 / 2**20 + 1.0

    def candidate_params(self, spec):
        return self.sim.candidate_params(spec)


class SimMeter:
    """search.selection.CandidateMeter on a SimulatedDevice: paired measurements like DeployedCandidateMeter."""

    def __init__(self, sim: SimulatedDevice, profile: DeviceProfile):
        self.sim, self.profile, self.probe = sim, profile, SimProbe(sim)
        self.measured: list[str] = []

    def measure(self, spec: ArchSpec) -> Measurement:
        return self._measure(spec, self.probe.reference())

    def _measure(self, spec: ArchSpec, reference: Callable[[], object]) -> Measurement:
        self.measured.append(spec.key)
        paired = measure_paired(self.probe.candidate(spec), reference, self.profile.timing,
                                self.probe.device, self.sim.clock)
        params = self.sim.candidate_params(spec)
        mem = self.probe.candidate_memory_mib(spec)
        status = "ok" if paired.relative_cv <= self.profile.timing.max_cv else "unstable"
        return Measurement(model=f"candidate {spec.key}", profile_name=self.profile.name,
                           profile_sha256=self.profile.sha256, device_name=self.probe.device_name,
                           precision="fp32", execution_mode="eager", batch=1, status=status, params=params,
                           latency=paired.target, paired=paired,
                           memory=MemoryStats("simulated", mem, mem - 1.0, 1.0))


def ramp(total_s: float, top: float = 2.0) -> Callable[[float], float]:
    """Speed falls steadily to 1/top over `total_s` virtual seconds, then stays there."""
    return lambda t: 1.0 + (top - 1.0) * min(1.0, t / total_s)


def step(at_s: float, factor: float = 2.0) -> Callable[[float], float]:
    return lambda t: 1.0 if t < at_s else factor


class SimPipelineProbe(SimProbe):
    """bench.pipeline.PipelineProbe on a SimulatedDevice: the one-step SR call costs
    `encoder_ms + candidate + decoder_ms + overhead_ms`, where the overhead is what no part measured alone
    shows (0 on an honest device)."""

    def __init__(self, sim: SimulatedDevice, encoder_ms: float = 4.0, decoder_ms: float = 6.0, overhead_ms: float = 0.0,
                 tiny_decoder_ms: float | None = None, deploy: str = "kl", lr_encoder_ms: float | None = None,
                 deploy_encoder: str = "kl", pair_overhead_ms: dict[tuple[str, str], float] | None = None):
        super().__init__(sim)
        self.encoder_ms, self.decoder_ms, self.overhead_ms = encoder_ms, decoder_ms, overhead_ms
        # `pair_overhead_ms`: (encoder, decoder) -> what pipelines with that pair cost on top (beside `overhead_ms`)
        self.pair_overhead_ms = dict(pair_overhead_ms or {})
        # `tiny_decoder_ms`, `lr_encoder_ms`: the device offers those parts too; `deploy`, `deploy_encoder`: the
        # decoder and encoder its pipelines run
        self.tiny_decoder_ms, self.deploy = tiny_decoder_ms, deploy
        self.lr_encoder_ms, self.deploy_encoder = lr_encoder_ms, deploy_encoder

    def parts(self):
        parts = {"bicubic + encoder": (lambda: self.sim.spend(self.encoder_ms), 1000),
                 "decoder": (lambda: self.sim.spend(self.decoder_ms), 2000)}
        if self.tiny_decoder_ms is not None:
            parts["tiny decoder"] = (lambda: self.sim.spend(self.tiny_decoder_ms), 200)
        if self.lr_encoder_ms is not None:
            parts["lr encoder"] = (lambda: self.sim.spend(self.lr_encoder_ms), 100)
        return parts

    def pipeline_ms(self, spec: ArchSpec, decoder: str | None = None, encoder: str | None = None) -> float:
        dec = self.tiny_decoder_ms if (decoder or self.deploy) == "tiny" else self.decoder_ms
        enc = self.lr_encoder_ms if (encoder or self.deploy_encoder) == "lr" else self.encoder_ms
        pair = self.pair_overhead_ms.get((encoder or self.deploy_encoder, decoder or self.deploy), 0.0)
        return enc + self.sim.true_ms(spec) + dec + self.overhead_ms + pair

    def deploying(self, encoder: str, decoder: str) -> SimPipelineProbe:
        other = copy.copy(self)
        other.deploy_encoder, other.deploy = encoder, decoder
        return other

    def candidate(self, spec):
        ms = self.pipeline_ms(spec)
        return lambda: self.sim.spend(ms)

    def candidate_memory_mib(self, spec):
        return super().candidate_memory_mib(spec) + 20.0


class SimPipelineMeter(SimMeter):
    """search.selection.CandidateMeter of whole pipelines on a SimulatedDevice (DeployedPipelineMeter's role)."""

    def __init__(self, sim: SimulatedDevice, profile: DeviceProfile, **parts_ms):
        super().__init__(sim, profile)
        self.probe = SimPipelineProbe(sim, **parts_ms)

    def measure_teacher_as_shipped(self) -> Measurement:
        """The teacher-shaped pipeline with the autoencoder's parts, whatever this meter deploys."""
        deploy, encoder = self.probe.deploy, self.probe.deploy_encoder
        self.probe.deploy, self.probe.deploy_encoder = "kl", "kl"
        try:
            return self.measure(self.sim.space.all_teacher())
        finally:
            self.probe.deploy, self.probe.deploy_encoder = deploy, encoder

    def measure_against_shipped(self, spec: ArchSpec) -> Measurement:
        """The candidate paired with the teacher as shipped (DeployedPipelineMeter's), not the teacher UNet."""
        shipped_ms = self.probe.pipeline_ms(self.sim.space.all_teacher(), "kl", "kl")
        return self._measure(spec, lambda: self.sim.spend(shipped_ms))
