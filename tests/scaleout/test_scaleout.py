"""Ray scale-out, run locally (`nox -s scaleout`; skipped where Ray is absent)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from search.problem import Constraints, SearchProblem
from search.run import run_search
from search.trials import TrialLog
from tests.scaleout.fake import make_fake_fidelity, make_slow_fake_fidelity
from tests.search.conftest import FakeCost, FakeFidelity

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_session():
    os.environ.setdefault("PYTHONPATH", str(REPO))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield
    ray.shutdown()


def problem_for(space):
    cost = FakeCost(space)
    return SearchProblem(space, FakeFidelity(space), cost, Constraints(latency_ms=0.5 * cost.predict_latency_at_ms(space.all_teacher())))


def test_ray_search_gives_the_same_trials_as_in_process(space, tmp_path, ray_session):
    from search.ray_executor import RayExecutor

    kw = {"n_init": 6, "pool": 300, "fit_maxiter": 30}
    t0 = time.perf_counter()
    local = run_search(problem_for(space), "bo", 20, tmp_path / "local", seed=3, q=4, show_progress=False, **kw)
    t_local = time.perf_counter() - t0
    executor = RayExecutor(make_fake_fidelity, space, workers=2)
    t0 = time.perf_counter()
    remote = run_search(problem_for(space), "bo", 20, tmp_path / "ray", seed=3, q=4, executor=executor,
                        show_progress=False, **kw)
    t_ray = time.perf_counter() - t0
    executor.shutdown()
    assert [t.key for t in remote] == [t.key for t in local]
    assert [t.fidelity for t in remote] == pytest.approx([t.fidelity for t in local])
    print(f"in-process {t_local:.1f} s, 2 Ray workers {t_ray:.1f} s")


def test_a_killed_ray_worker_costs_no_trial(space, tmp_path, ray_session):
    from search.ray_executor import RayExecutor

    executor = RayExecutor(make_slow_fake_fidelity, space, workers=2)
    victim, killed = executor.worker_pids()[0], []

    def kill() -> None:
        try:
            os.kill(victim, signal.SIGKILL)
            killed.append(True)
        except ProcessLookupError:      # the search had already ended: the test would prove nothing
            killed.append(False)

    threading.Timer(1.0, kill).start()  # 40 evaluations at 0.1 s on 2 workers take >= 2 s
    trials = run_search(problem_for(space), "random", 40, tmp_path, seed=0, q=4, executor=executor,
                        show_progress=False)
    executor.shutdown()
    assert killed == [True], "the worker was not killed while the search ran"
    assert len(trials) == 40 and len({t.key for t in trials}) == 40
    assert all(t.fidelity is not None for t in trials)
    assert len(TrialLog(tmp_path / "trials.jsonl").read()) == 40
