"""Measurement on the Ray node that has the device: cost tables, pipelines and the choice's check.

A profile names the custom Ray resource its device's node advertises (`device.ray_resource:
"device:orin-nano"`, the node started with `ray start --address HEAD --resources='{"device:orin-nano":
1}'`). Given a Ray address, `RemoteDevice` starts one measurement actor that needs one unit of that
resource, so it runs on that node and nowhere else, and one at a time (two measurements on one device
would disturb each other). The actor is sent the teacher's files, so the node needs no shared
filesystem, only this suite installed at the same version (checked).

Every (slot, choice) entry, candidate, fixed part and whole pipeline is one actor task. The driver keeps
each result as it arrives; Ray restarts an actor whose worker died and retries only the tasks that had
not finished, so a killed worker costs the measurement in flight, never a finished one. Results carry
the node's provenance (host, Ray node id, device, package versions, commit) and the worker process that
measured each of them.

Example:
    >>> device = RemoteDevice(profile, "runs/quick/teacher", "ray://head:10001")
    >>> table = measure_cost_table(space, RayTableMeter(device), profile)
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.costtable import CandidateMeasurement, ChoiceCost, ProbeMeter
from bench.measure import Measurement, measure_workload
from bench.pipeline import DECODER_PARTS, ENCODER_PARTS, PartCost, PipelineProbeMeter
from bench.profile import DeviceProfile
from bench.workloads import Workload
from tocsr.core.errors import ConfigError, TocsrError
from tocsr.core.space import ArchSpec, SearchSpace
from tocsr.core.teacher.record import TeacherRecord

# A teacher folder's parts that `load_teacher` reads (latent caches and training state stay behind).
TEACHER_PARTS = ("autoencoder", "unet", "condition", "scheduler")
# Tasks in flight per meter: the actor runs them in order, one at a time; a second one queued keeps it
# busy while the driver takes the first, and no more, so a `stop()` wastes at most one measurement.
WINDOW = 2


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("measuring on a Ray node needs ray on this machine and on the node: "
                          "pip install -c constraints.txt 'ray[default]==2.*'") from None
    return ray


def teacher_files(folder: str | Path) -> dict[str, bytes]:
    """The files `tocsr.core.teacher.train.load_teacher` reads from `folder`, by relative path."""
    root = Path(folder)
    files = {str(p.relative_to(root)): p.read_bytes() for part in TEACHER_PARTS
             for p in sorted((root / part).rglob("*")) if p.is_file()}
    record = root / TeacherRecord.FILE_NAME
    if record.is_file():
        files[record.name] = record.read_bytes()
    if not files:
        raise ConfigError(f"{root}: no teacher files to send to the measurement node (expected "
                          f"{', '.join(TEACHER_PARTS)}); pass the teacher folder a `tocsr teacher` command wrote")
    return files


class _MeasurementActor:
    """Lives on the device's node: the teacher, rebuilt from its files, and the in-process meters of
    bench.costtable / bench.pipeline / bench.probe. Cost does not depend on weight values, so every
    candidate is built from a fresh bank of surrogate blocks, as `tocsr costs` measures locally."""

    def __init__(self, files: dict[str, bytes], profile: DeviceProfile):
        import torch

        from tocsr.core.artifacts import atomic_write_bytes
        from tocsr.core.provenance import content_sha256
        from tocsr.core.space import derive_search_space
        from tocsr.core.teacher.train import load_teacher

        # One folder per teacher content: a restarted actor, or the next stage, reuses it instead of piling up copies.
        digest = content_sha256({rel: hashlib.sha256(blob).hexdigest() for rel, blob in files.items()})[:16]
        self.folder = Path(tempfile.gettempdir()) / f"tocsr-teacher-{digest}"
        for rel, blob in files.items():
            path = self.folder / rel
            if not path.is_file() or path.stat().st_size != len(blob):
                atomic_write_bytes(path, blob)
        if profile.budgets.energy_mj is not None:
            from bench.rapl import energy_unmeasurable

            why = energy_unmeasurable(profile.device.kind, profile.device.index)
            if why:
                raise ConfigError(f"profile {profile.name!r} sets budgets.energy_mj and this node cannot measure "
                                  f"energy ({why}); remove the energy budget or use a node whose counters are readable")
        if profile.device.threads:
            torch.set_num_threads(profile.device.threads)
        self.profile = profile
        self.teacher = load_teacher(self.folder)
        self.space: SearchSpace = derive_search_space(self.teacher.unet)
        self._table: ProbeMeter | None = None
        self._pipeline: PipelineProbeMeter | None = None
        self._pipelines: dict[tuple[str, str], PipelineProbeMeter] = {}     # by (encoder, decoder)
        self._deployed: dict[tuple[str, str], Any] = {}

    def _bank(self):
        from tocsr.core.distill.bank import new_bank

        return new_bank(self.space)

    def table(self) -> ProbeMeter:
        if self._table is None:
            from bench.probe import cost_probe, teacher_inputs

            args, kwargs = teacher_inputs(self.teacher, self.profile)
            probe = cost_probe(self.space, copy.deepcopy(self.teacher.unet), args, kwargs, self.profile, self._bank())
            self._table = ProbeMeter(probe, self.profile)
        return self._table

    def pipeline(self) -> PipelineProbeMeter:
        if self._pipeline is None:
            from bench.probe import pipeline_probe

            self._pipeline = PipelineProbeMeter(pipeline_probe(self.teacher, self.space, self._bank(), self.profile),
                                                self.profile)
            self._pipelines[("kl", "kl")] = self._pipeline
        return self._pipeline

    def provenance(self) -> dict[str, Any]:
        import ray

        from tocsr import __version__
        from tocsr.core.provenance import environment

        meter = self.table()
        return environment({"ray_node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                            "device_name": meter.device_name, "bytes_per_param": meter.bytes_per_param,
                            "tocsr_version": __version__, "space_id": self.space.space_id})

    def pid(self) -> int:
        return os.getpid()

    def whole_counts(self) -> tuple[int, int]:
        return self.table().whole_counts()

    def entry(self, slot: str, choice: str) -> tuple[ChoiceCost, int]:
        return self.table().entry(slot, choice), os.getpid()

    def candidate(self, choices: dict[str, str], role: str) -> tuple[CandidateMeasurement, int]:
        return self.table().candidate(self.space.spec(choices), role), os.getpid()

    def parts(self) -> list[PartCost]:
        return self.pipeline().parts()

    def pipeline_candidate(self, choices: dict[str, str], role: str, encoder: str = "kl", decoder: str = "kl"
                           ) -> tuple[CandidateMeasurement, int]:
        key = (encoder, decoder)
        if key not in self._pipelines:
            self._pipelines[key] = self.pipeline().deploying(encoder, decoder)
        return self._pipelines[key].candidate(self.space.spec(choices), role), os.getpid()

    def workload(self, workload: Workload, reference: Workload | None, profile: DeviceProfile) -> Measurement:
        return measure_workload(workload, profile, reference=reference)

    def _deployed_meter(self, encoder: str, decoder: str) -> Any:
        """The meter of the candidate as deployed with `encoder` and `decoder` ("kl": the autoencoder's own;
        "lr", "tiny": parts of the shapes the parts stage trains, random weights: cost does not depend on them)."""
        key = (encoder, decoder)
        if key not in self._deployed:
            from bench.probe import DeployedPipelineMeter, deployed_meter, parts_for_cost

            if self.profile.budgets.scope != "pipeline":
                self._deployed[key] = deployed_meter(self.teacher, self.space, self._bank(), self.profile)
            else:
                enc, dec = parts_for_cost(encoder, decoder, self.profile.resolution.scale)
                self._deployed[key] = DeployedPipelineMeter(self.teacher, self.space, self._bank(), self.profile,
                                                            dec, enc)
        return self._deployed[key]

    def deployed(self, choices: dict[str, str], decoder: str = "kl", encoder: str = "kl") -> Measurement:
        return self._deployed_meter(encoder, decoder).measure(self.space.spec(choices))

    def teacher_as_shipped(self) -> Measurement:
        meter = self._deployed_meter("kl", "kl")
        if hasattr(meter, "measure_teacher_as_shipped"):
            return meter.measure_teacher_as_shipped()
        return meter.measure(self.space.all_teacher())       # a backbone budget: the teacher backbone is as shipped


class RemoteDevice:
    """The profile's device on a Ray cluster: one measurement actor on the node that advertises
    `profile.device.ray_resource`, and that node's provenance (`provenance`)."""

    def __init__(self, profile: DeviceProfile, teacher_dir: str | Path, address: str, max_restarts: int = 3):
        ray = _ray()
        resource = profile.device.ray_resource
        if not resource:
            raise ConfigError(f"profile {profile.name!r} names no device.ray_resource, so nothing says which Ray node "
                              f"has its device; add `ray_resource: \"device:<name>\"` under `device:` or measure "
                              "without --ray-address")
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            except (ConnectionError, RuntimeError, ValueError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ConfigError(f"cannot reach the Ray cluster at --ray-address {address!r} ({first}); start its head "
                                  "with `ray start --head` and pass the address it prints") from None
        have = ray.cluster_resources()
        if have.get(resource, 0) < 1:
            names = sorted(k for k in have if not k.startswith("node:") and k not in ("memory", "object_store_memory"))
            raise ConfigError(f"no node of the Ray cluster at {address} advertises the resource {resource!r} that "
                              f"profile {profile.name!r} measures on (it has: {', '.join(names) or 'nothing'}); start "
                              f"the device's node with `ray start --address <head> --resources='{{\"{resource}\": 1}}'` "
                              "or run without --ray-address")
        self.ray, self.profile, self.resource = ray, profile, resource
        # num_cpus=0: the resource unit is what places and serialises measurements on the device's node.
        actor = ray.remote(num_cpus=0, resources={resource: 1}, max_restarts=max_restarts,
                           max_task_retries=max_restarts)(_MeasurementActor)
        # Held for the actor's life: a restarted actor is built again from the same object.
        self._files = ray.put(teacher_files(teacher_dir))
        self.actor = actor.remote(self._files, profile)
        self.provenance: dict[str, Any] = self.get(self.actor.provenance.remote())
        from tocsr import __version__

        if self.provenance["tocsr_version"] != __version__:
            self.shutdown()
            raise ConfigError(f"the node with {resource!r} runs tocsr {self.provenance['tocsr_version']}, this machine "
                              f"{__version__}; install the same version on both")
        self.device_name: str = self.provenance["device_name"]
        self.bytes_per_param: int = self.provenance["bytes_per_param"]

    def get(self, ref: Any) -> Any:
        """`ray.get`, with a measurement that failed on the node turned into one line naming the node."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as err:
            last = next((line for line in reversed(str(err).strip().splitlines()) if line.strip()), repr(err))
            raise TocsrError(f"measuring {self.profile.name!r} on the Ray node with {self.resource!r} failed: "
                             f"{last.strip()}") from None

    def map(self, method: str, calls: Sequence[tuple], labels: Sequence[str],
            progress: Callable[[str], None] | None = None, stop: Callable[[], bool] | None = None) -> list[Any]:
        """`actor.<method>(*args)` for each of `calls`, in order, at most `WINDOW` in flight; each result is
        kept as it arrives. `stop()` returning True submits no more: the measured prefix is returned."""
        results: list[Any] = []
        pending: dict[Any, int] = {}
        done: dict[int, Any] = {}
        submitted = 0
        while submitted < len(calls) or pending:
            while submitted < len(calls) and len(pending) < WINDOW and not (stop is not None and stop()):
                pending[getattr(self.actor, method).remote(*calls[submitted])] = submitted
                submitted += 1
            if not pending:
                break
            [ref], _ = self.ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            done[i] = self.get(ref)
            if progress:
                progress(labels[i])
        while len(results) in done:
            results.append(done[len(results)])
        return results

    def pid(self) -> int:
        return self.get(self.actor.pid.remote())

    def measure_workload(self, workload: Workload, reference: Workload | None = None,
                         profile: DeviceProfile | None = None) -> Measurement:
        """bench.measure.measure_workload on the node (the modules travel pickled), under `profile` (another
        profile of the same device, e.g. another precision) or the one this device was opened with."""
        return self.get(self.actor.workload.remote(workload, reference, profile or self.profile))

    def shutdown(self) -> None:
        self.ray.kill(self.actor)


class RayTableMeter:
    """bench.costtable.TableMeter on a `RemoteDevice`. `measured_by` maps each entry and candidate key to
    the worker process that measured it (a restarted worker has a new pid)."""

    def __init__(self, device: RemoteDevice):
        self.device = device
        self.device_name, self.bytes_per_param = device.device_name, device.bytes_per_param
        self.measured_by: dict[str, int] = {}

    def whole_counts(self) -> tuple[int, int]:
        return tuple(self.device.get(self.device.actor.whole_counts.remote()))   # type: ignore[return-value]

    def _keep(self, results: list[tuple[Any, int]], keys: Sequence[str]) -> list[Any]:
        self.measured_by.update({k: pid for k, (_, pid) in zip(keys, results, strict=False)})   # a stopped run measured a prefix
        return [r for r, _ in results]

    def entries(self, keys: Sequence[tuple[str, str]], progress: Callable[[str], None] | None = None
                ) -> dict[tuple[str, str], ChoiceCost]:
        labels = [f"{s}:{c}" for s, c in keys]
        costs = self._keep(self.device.map("entry", list(keys), labels, progress), labels)
        return dict(zip(keys, costs, strict=True))

    def candidates(self, specs: Sequence[ArchSpec], role: str, progress: Callable[[str], None] | None = None,
                   stop: Callable[[], bool] | None = None, method: str = "candidate", extra: tuple = ()
                   ) -> list[CandidateMeasurement]:
        labels = [f"{role} {i + 1}/{len(specs)}" for i in range(len(specs))]
        results = self.device.map(method, [(dict(s.items()), role, *extra) for s in specs], labels, progress, stop)
        return self._keep(results, [s.key for s in specs])


class RayPipelineMeter(RayTableMeter):
    """bench.pipeline.PipelineMeter on a `RemoteDevice`: whole pipelines with the parts `pair` names."""

    def __init__(self, device: RemoteDevice, pair: tuple[str, str] = ("kl", "kl")):
        super().__init__(device)
        self.pair = pair

    def deploying(self, encoder: str, decoder: str) -> RayPipelineMeter:
        other = RayPipelineMeter(self.device, (encoder, decoder))
        other.measured_by = self.measured_by
        return other

    def parts(self, progress: Callable[[str], None] | None = None) -> list[PartCost]:
        parts = self.device.get(self.device.actor.parts.remote())
        for p in parts:
            if progress:
                progress(p.name)
        return parts

    def candidates(self, specs: Sequence[ArchSpec], role: str, progress: Callable[[str], None] | None = None,
                   stop: Callable[[], bool] | None = None, method: str = "pipeline_candidate", extra: tuple = ()
                   ) -> list[CandidateMeasurement]:
        return super().candidates(specs, role, progress, stop, method, extra or self.pair)


class RayCandidateMeter:
    """search.selection.CandidateMeter on a `RemoteDevice`: the candidate as deployed (the whole pipeline
    with `encoder` and `decoder`, or the backbone, as the profile's budgets scope says), measured on the device's
    node."""

    def __init__(self, device: RemoteDevice, decoder: str = "kl", encoder: str = "kl"):
        for what, kind, offered in (("decoder", decoder, DECODER_PARTS), ("encoder", encoder, ENCODER_PARTS)):
            if kind not in offered:
                raise ConfigError(f"{what} {kind!r}: a pipeline deploys one of {', '.join(offered)}")
        self.device, self.decoder, self.encoder = device, decoder, encoder

    def measure(self, spec: ArchSpec) -> Measurement:
        return self.device.get(self.device.actor.deployed.remote(dict(spec.items()), self.decoder, self.encoder))

    def measure_teacher_as_shipped(self) -> Measurement:
        """The teacher-shaped pipeline with the autoencoder's own parts, on the node (what a `latency_vs_teacher`
        budget is a multiple of, whatever decoder this meter deploys)."""
        return self.device.get(self.device.actor.teacher_as_shipped.remote())


__all__ = ["RayCandidateMeter", "RayPipelineMeter", "RayTableMeter", "RemoteDevice", "teacher_files"]
