"""Candidates judged on a cost table measured on a device this machine cannot reach.

A device with no Python or torch is measured through an ONNX bundle (`tocsr costs export`, its runner on the
device, `tocsr costs import`): the imported table holds the device's own measurements. Its profile is predicted
here (the device is not attached), so the selection's usual check of a choice, measuring it on the spot, can
only be the profile's roofline; a roofline judging a measured table would replace the device's measurements
with device constants (and, where the two disagree, re-measure the whole table as a roofline).

`TablePredictionMeter` is the selection's meter for that case: each candidate's "measurement" is the measured
table's prediction of it (its additive entries and the correction fitted on whole candidates measured on the
device, the pipeline's fixed parts where the budget is the whole call). Nothing is re-measured, so every figure
is labelled predicted (`Measurement.status`) and says where it came from (`Measurement.notes`). Confirming the
choice on the device, a bundle of the chosen candidate alone timed there, is not built yet (docs/status.md).
"""

from __future__ import annotations

from bench.costtable import CostTable
from bench.counting import MacCount
from bench.measure import Measurement
from bench.memory import MemoryStats
from bench.pipeline import PipelineCostModel
from bench.profile import DeviceProfile
from bench.stats import LatencyStats, PairedLatency
from tocsr.core.errors import ConfigError
from tocsr.core.space import ArchSpec, SearchSpace

TIMER = "cost table"      # the `timer` of every latency sample this meter returns: none was timed here


def _paired(ratio: float, ratio_at_q: float, q: float, reference_ms: float) -> PairedLatency:
    """A prediction in the paired form the selection judges: three relative samples whose median is `ratio` and
    whose q-th percentile (numpy's linear interpolation) is `ratio_at_q`, so `ms_at(q, ref)` is the table's own
    p_q prediction at any speed of the device."""
    if q <= 50 or ratio_at_q <= ratio:
        rel = (ratio, ratio, ratio)
    else:
        # the q-th percentile of (lo, ratio, hi) sits at position 2q/100 in 0..2: ratio + (2q/100 - 1)(hi - ratio)
        spread = (ratio_at_q - ratio) / (2 * q / 100 - 1)
        rel = (max(0.0, ratio - spread), ratio, ratio + spread)
    return PairedLatency(LatencyStats.from_samples([r * reference_ms for r in rel], TIMER, 0),
                         LatencyStats.from_samples([reference_ms] * 3, TIMER, 0), rel, 1)


class TablePredictionMeter:
    """The selection's meter (search.selection.CandidateMeter) for a profile whose device is not attached and a
    cost model measured on that device: candidates are predicted from the model, labelled predicted."""

    def __init__(self, model: CostTable | PipelineCostModel, space: SearchSpace, profile: DeviceProfile):
        table = model.table if isinstance(model, PipelineCostModel) else model
        if not table.measured:
            raise ConfigError(f"the cost table for {table.device_name} is itself a roofline prediction: a predicted "
                              "device's candidates are checked with the roofline (bench.predicted), not this meter")
        if table.profile_name != profile.name:
            raise ConfigError(f"the cost table was measured for profile {table.profile_name!r}, the search is for "
                              f"{profile.name!r}: import the results of that profile's bundle (`tocsr costs export -p "
                              f"{profile.name}`)")
        self.model, self.table, self.space, self.profile = model, table, space, profile
        # an imported bundle's runner times and reads no memory: its table's memory is the weights alone
        memory = f"; memory: {table.extra['memory']}" if "memory" in table.extra else ""
        self.basis = (f"predicted from the cost table measured on {table.device_name} (its entries and the correction "
                      f"fitted on whole candidates measured there); not re-measured: the device is not attached "
                      f"here{memory}")

    def _measurement(self, name: str, spec: ArchSpec, ratio: float, ratio_at_q: float) -> Measurement:
        params = self.table.params(spec)
        weights = params * self.table.bytes_per_param / 2**20
        peak = self.model.predict_memory_mib(spec)
        return Measurement(
            model=name, profile_name=self.profile.name, profile_sha256=self.profile.sha256,
            device_name=self.table.device_name, precision=self.table.precision,
            execution_mode=self.table.execution_mode, batch=self.profile.batch, status="predicted", params=params,
            macs=MacCount(total_macs=self.table.macs(spec), per_op={}, per_module={}, counter=TIMER),
            paired=_paired(ratio, ratio_at_q, self.profile.timing.percentile, self.table.reference_ms),
            memory=MemoryStats(method=TIMER, peak_mib=peak, weights_mib=weights,
                               transient_peak_mib=max(0.0, peak - weights)),
            energy_note="not measured: the device is not attached", notes=(self.basis,))

    def measure(self, spec: ArchSpec) -> Measurement:
        """The candidate as the deployed model (the pipeline with its chosen parts where the budget is the
        whole call), predicted in units of the table's reference."""
        ratio = self.model.predict_ratio(spec)
        at_q = self.model.predict_latency_at_ms(spec) / self.table.reference_ms
        return self._measurement(f"candidate {spec.key}", spec, ratio, at_q)

    def measure_teacher_as_shipped(self) -> Measurement:
        """The teacher with the autoencoder's own parts: what a `latency_vs_teacher` budget is a multiple of."""
        teacher = self.space.all_teacher()
        if not isinstance(self.model, PipelineCostModel):
            return self.measure(teacher)
        shipped = self.model.with_parts("kl", "kl")
        ratio = shipped.predict_ratio(teacher)
        at_q = shipped.predict_latency_at_ms(teacher) / self.table.reference_ms
        return self._measurement("pipeline teacher (autoencoder's parts)", teacher, ratio, at_q)
