"""Small programs the fault-injection tests start, SIGKILL at random moments, and start again.

python -m tests.reliability.drivers search <folder> <budget>
python -m tests.reliability.drivers train <folder> <steps>
python -m tests.reliability.drivers artifacts <folder> <count>
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def search(folder: str, budget: int) -> None:
    from search.problem import Constraints, SearchProblem
    from search.run import run_search
    from tests.search.conftest import FakeCost, FakeFidelity
    from tocsr.core.models.unet import build_unet_from_preset
    from tocsr.core.space import derive_search_space

    class SlowFidelity(FakeFidelity):
        def evaluate(self, spec):
            time.sleep(0.05)           # a window for the kill to land inside an evaluation
            return super().evaluate(spec)

    space = derive_search_space(build_unet_from_preset("tiny", "meta"))
    cost = FakeCost(space)
    problem = SearchProblem(space, SlowFidelity(space), cost,
                            Constraints(latency_ms=0.5 * cost.predict_latency_at_ms(space.all_teacher())))
    run_search(problem, "evolution", budget, folder, seed=0, q=2, show_progress=False)


def train(folder: str, steps: int) -> None:
    import dataclasses

    from tocsr.core.teacher import presets as P
    from tocsr.core.teacher.train import train_teacher

    base = P.TEACHER_PRESETS["smoke"]
    P.TEACHER_PRESETS["fault"] = dataclasses.replace(
        base, name="fault", diffusion=dataclasses.replace(base.diffusion, steps=steps, checkpoint_every=3))
    train_teacher("fault", folder, resume=True, threads=1)


def artifacts(folder: str, count: int) -> None:
    from tocsr.core.artifacts import write_artifact

    for i in range(count):
        write_artifact(Path(folder) / "result.json", "tocsr.test", 1, {"i": i, "payload": list(range(20000))})


if __name__ == "__main__":
    kind, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"search": search, "train": train, "artifacts": artifacts}[kind](folder, n)
