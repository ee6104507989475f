"""Scale-out with Ray (optional extra): a search's q-batch evaluated by a pool of Ray actors.

Each actor builds its own fidelity evaluator from a picklable factory (e.g. functools.partial of a
loader and the run's folders), so models are loaded once per worker, not shipped per task. Actors
restart and their tasks are retried when a worker dies, so a killed worker costs time, not trials;
the search's trial log is written by the driver only, in order, exactly as in-process.

Devices: a measurement actor can require a custom resource that only the node with that device
advertises (`ray start --resources='{"device:h100": 1}'`), so one search can use measurement
nodes of several kinds.

Example:
    >>> executor = RayExecutor(partial(load_fidelity, "runs/teacher", "runs/surrogates"), workers=2)
    >>> run_search(problem, "bo", 60, "runs/search", executor=executor)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from search.run import Outcome, evaluate_one
from tocsr.core.errors import ConfigError
from tocsr.core.space import ArchSpec


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("scale-out needs the optional extra ray (pip install -c constraints.txt 'ray==2.*')") from None
    return ray


class _EvaluatorActor:
    def __init__(self, make_evaluator: Callable[[], object], space_dict: dict):
        from tocsr.core.space import SearchSpace

        self.evaluator = make_evaluator()
        self.space = SearchSpace.from_dict(space_dict)

    def evaluate(self, choices: dict[str, str]) -> Outcome:
        return evaluate_one(self.evaluator, self.space.spec(choices))

    def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    def __init__(self, make_evaluator: Callable[[], object], space, workers: int = 2,
                 resources: dict[str, float] | None = None, address: str | None = None, max_restarts: int = 3):
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
                     num_cpus=None if address else max(workers, 1))
        actor = ray.remote(num_cpus=1, max_restarts=max_restarts, max_task_retries=max_restarts)(_EvaluatorActor)
        opts = {"resources": resources} if resources else {}
        self.ray, self.space = ray, space
        self.actors = [actor.options(**opts).remote(make_evaluator, space.to_dict()) for _ in range(workers)]

    def map(self, specs: Sequence[ArchSpec]) -> list[Outcome]:
        refs = [self.actors[i % len(self.actors)].evaluate.remote(dict(s.items())) for i, s in enumerate(specs)]
        return self.ray.get(refs)

    def worker_pids(self) -> list[int]:
        return self.ray.get([a.pid.remote() for a in self.actors])

    def shutdown(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
