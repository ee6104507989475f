"""TPE through optuna (maintained), with NNI's TPE tuner as an optional drop-in.

NNI was named by the project, but its last release (3.0) is from 2023-09; it pins filelock<3.12
and its `nni.nas` needs an undeclared pytorch-lightning (../shared/DEPENDENCIES.md and
docs/search.md hold the evidence). So `tpe` runs optuna's TPESampler; `tpe-nni` runs NNI's tuner
when the optional extra is installed, behind the same ask/tell interface.
"""

from __future__ import annotations

import random

from search.problem import SearchProblem
from search.strategies.base import register_strategy, sample_feasible
from search.trials import Trial
from tocsr.core.errors import ConfigError
from tocsr.core.space import ArchSpec

_PENALTY = 1e3   # told to the sampler for cheap-infeasible proposals (never evaluated)


@register_strategy("tpe")
class OptunaTPE:
    name = "tpe"

    def __init__(self, problem: SearchProblem, seed: int = 0, n_startup: int = 8):
        try:
            import optuna
        except ImportError as err:
            raise ConfigError("--method tpe needs optuna (pip install -c constraints.txt optuna)") from err
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna, self.problem = optuna, problem
        # optuna >= 5: constraints are set per trial (slack <= 0 is feasible) and TPE reads them.
        self.study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=n_startup, multivariate=True))
        self.open: dict[str, object] = {}
        self.seen: set[str] = set()
        self.rng = random.Random(seed)

    def _spec(self, trial) -> ArchSpec:
        return self.problem.space.spec({s.name: trial.suggest_categorical(s.name, list(s.choices))
                                        for s in self.problem.space.slots})

    def ask(self, n: int) -> list[ArchSpec]:
        out: list[ArchSpec] = []
        for _ in range(50 * n):
            if len(out) >= n:
                break
            trial = self.study.ask()
            spec = self._spec(trial)
            slack = max(self.problem.cheap_slacks(spec).values(), default=0.0)
            if slack > 0 or spec.key in self.seen or spec.key in {s.key for s in out}:
                trial.set_constraint("slack", max(slack, 1e-3))
                self.study.tell(trial, _PENALTY)      # teaches TPE where not to look, costs no evaluation
                continue
            self.open[spec.key] = trial
            out.append(spec)
        while len(out) < n:   # TPE stuck in infeasible regions: fall back to a feasible random draw
            spec = sample_feasible(self.problem, self.rng, self.seen | {s.key for s in out})
            if spec is None:
                break
            out.append(spec)
        return out

    def tell(self, trials: list[Trial]) -> None:
        for t in trials:
            self.seen.add(t.key)
            trial = self.open.pop(t.key, None)
            value = t.objective if t.objective is not None else _PENALTY
            slack = 0.0 if t.feasible else 1.0
            if trial is None:          # replayed from a log, or a fallback draw: add it as a finished trial
                dist = {s.name: self.optuna.distributions.CategoricalDistribution(list(s.choices))
                        for s in self.problem.space.slots}
                self.study.add_trial(self.optuna.trial.create_trial(
                    params=dict(t.choices), distributions=dist, value=value, constraints={"slack": slack}))
            else:
                trial.set_constraint("slack", slack)
                self.study.tell(trial, value)


@register_strategy("tpe-nni")
class NNITPE:
    name = "tpe-nni"

    def __init__(self, problem: SearchProblem, seed: int = 0):
        try:
            from nni.algorithms.hpo.tpe_tuner import TpeTuner
        except ImportError as err:
            raise ConfigError("--method tpe-nni needs the optional extra `nni` (unmaintained since 2023-09; "
                              "use --method tpe, optuna's TPE, instead)") from err
        self.problem = problem
        self.tuner = TpeTuner(optimize_mode="minimize", seed=seed)
        self.tuner.update_search_space({s.name: {"_type": "choice", "_value": list(s.choices)}
                                        for s in problem.space.slots})
        self.next_id, self.ids, self.seen = 0, {}, set()
        self.rng = random.Random(seed)

    def ask(self, n: int) -> list[ArchSpec]:
        out = []
        for _ in range(50 * n):
            if len(out) >= n:
                break
            pid = self.next_id
            self.next_id += 1
            params = self.tuner.generate_parameters(pid)
            spec = self.problem.space.spec(params)
            if not self.problem.cheap_feasible(spec) or spec.key in self.seen:
                self.tuner.receive_trial_result(pid, params, _PENALTY)
                continue
            self.ids[spec.key] = (pid, params)
            out.append(spec)
        return out

    def tell(self, trials: list[Trial]) -> None:
        for t in trials:
            self.seen.add(t.key)
            pid, params = self.ids.pop(t.key, (None, None))
            if pid is not None:
                self.tuner.receive_trial_result(pid, params, t.objective if t.objective is not None else _PENALTY)
