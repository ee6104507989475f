"""Time the held-out pipelines the model missed (and a few it did not) again, whole and backbone alone.

Run from the repository root after `tocsr teacher train --preset quick --steps 20 --out runs/ev/teacher`.
"""

import copy
import time

import torch

from bench.pipeline import load_cost_model
from bench.probe import TorchPipelineProbe, TorchProbe, teacher_inputs
from bench.profile import load_profile
from tocsr.core.distill.bank import new_bank
from tocsr.core.space import derive_search_space
from tocsr.core.teacher.train import load_teacher

torch.set_num_threads(2)


def median_ms(call, n=30):
    for _ in range(5):
        call()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
    return round(sorted(samples)[n // 2], 2)


model = load_cost_model("reports/evidence/pipeline-costs-cpu/cpu-2core.json", "pipeline")
held = model.holdout()
errors = model.errors(held)
teacher = load_teacher("runs/ev/teacher")
space = derive_search_space(teacher.unet)
profile = load_profile("cpu-2core")
bank = new_bank(space)
pipes = TorchPipelineProbe(teacher, space, bank, profile)
args, kwargs = teacher_inputs(teacher, profile)
backbones = TorchProbe(space, copy.deepcopy(teacher.unet), args, kwargs, profile, bank)
order = sorted(range(len(held)), key=lambda i: -errors[i])
for i in order[:3] + order[-2:]:
    spec = space.spec(held[i].choices)
    print(f"error {errors[i]:+.3f}: whole {median_ms(pipes.candidate(spec))} ms, backbone alone "
          f"{median_ms(backbones.candidate(spec))} ms (table {model.table.predict_latency_ms(spec):.2f}), "
          f"{len(spec.replaced())} blocks replaced")
parts = pipes.parts()
print(f"encoder {median_ms(parts['bicubic + encoder'][0])} ms, decoder {median_ms(parts['decoder'][0])} ms")
