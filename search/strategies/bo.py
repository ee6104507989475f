"""ε-constrained Bayesian optimisation with BoTorch.

Model: a SingleTaskGP on the one-hot encoding of candidates (BoTorch's default RBF kernel with
dimension-scaled priors, which suits the ~150-dimensional one-hot space), fitted to log fidelity
error (errors span decades).
Acquisition: qLogNoisyExpectedImprovement, optimised over a discrete pool with
`optimize_acqf_discrete` (q > 1 by sequential greedy conditioning, so a batch can be evaluated in
parallel). The pool is fresh samples, 1-2 slot mutations of the best feasible candidates so far,
and the local optima of an analytic acquisition (log EI; constrained EI in the paper formulation)
climbed from the best trials and pool points (search/strategies/local_search.py): a random pool
almost never holds the candidates on the latency boundary where the optimum sits.
  * device formulation: objective = -log fidelity; every constraint is cheap, so the pool is filtered
    analytically before the acquisition ever sees it;
  * paper formulation: objective = -complexity (known in closed form from the one-hot, through a
    GenericMCObjective), constraint callable log fidelity - log ε_fid (negative = feasible).
"""

from __future__ import annotations

import math
import random
import warnings

import torch

from search.encoding import OneHot
from search.problem import SearchProblem
from search.strategies.base import mutate, register_strategy, repair, sample_feasible
from search.strategies.local_search import hill_climb
from search.trials import Trial
from tocsr.core.space import ArchSpec

_FLOOR = 1e-9   # log of a fidelity error of exactly 0 (the all-teacher candidate)


@register_strategy("bo")
class BayesianOptimisation:
    name = "bo"

    def __init__(self, problem: SearchProblem, seed: int = 0, n_init: int = 8, pool: int = 1500,
                 mutations_of_best: int = 8, fit_maxiter: int = 75, block_error=None, climb_starts: int = 4):
        self.problem, self.seed = problem, seed
        self.rng = random.Random(seed)
        self.enc = OneHot(problem.space)
        self.n_init, self.pool, self.mut_best, self.fit_maxiter = n_init, pool, mutations_of_best, fit_maxiter
        self.climb_starts = climb_starts   # climbs from this many best trials and as many best pool points
        self.block_error = block_error     # optional per-(slot, choice) distillation errors: one extra GP input
        self.trials: list[Trial] = []
        self.seen: set[str] = set()
        self.last_fit_s = 0.0

    def tell(self, trials: list[Trial]) -> None:
        for t in trials:
            self.seen.add(t.key)
            if t.fidelity is not None:
                self.trials.append(t)

    # --- candidate pool -------------------------------------------------------------------
    def _pool(self, taken: set[str]) -> list[ArchSpec]:
        cands: dict[str, ArchSpec] = {}
        best = sorted((t for t in self.trials if t.feasible), key=lambda t: t.objective)[:self.mut_best]
        for t in best:
            parent = self.problem.space.spec(t.choices)
            for _ in range(self.pool // (4 * max(1, len(best)))):
                child = mutate(self.problem, parent, self.rng)
                if child.key not in taken and self._pool_ok(child):
                    cands[child.key] = child
        attempts = 0
        while len(cands) < self.pool and attempts < 3 * self.pool:
            attempts += 1
            spec = self.problem.space.sample_mixed(self.rng)
            if not self._pool_ok(spec):
                spec = repair(self.problem, spec, self.rng)
            if spec is not None and spec.key not in taken:
                cands[spec.key] = spec
        return list(cands.values())

    def _pool_ok(self, spec: ArchSpec) -> bool:
        return self.problem.cheap_feasible(spec)

    # --- model and acquisition ---------------------------------------------------------------
    def _features(self, specs: list[ArchSpec]) -> torch.Tensor:
        """One-hot, plus (when per-block errors are known) the log of their sum scaled to [0, 1]:
        a cheap, informative summary the GP can lean on while it has few points."""
        x = self.enc.encode(specs)
        if self.block_error is None:
            return x
        sums = torch.tensor([[sum(0.0 if c == "teacher" else self.block_error(s, c) for s, c in spec.items())]
                             for spec in specs], dtype=torch.float64)
        lo, hi = math.log(1e-4), math.log(10.0)
        return torch.cat([x, ((sums + 1e-4).log() - lo).div(hi - lo).clamp(0, 1)], dim=1)

    def _fit(self):
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        x = self._features([self.problem.space.spec(t.choices) for t in self.trials])
        log_fid = torch.tensor([[math.log(max(t.fidelity, _FLOOR))] for t in self.trials], dtype=torch.float64)
        y = -log_fid if self.problem.formulation == "device" else log_fid
        model = SingleTaskGP(x, y, outcome_transform=Standardize(m=1))
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # optimizer-status warnings: a capped maxiter is deliberate
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": self.fit_maxiter}})
        return model, x

    def _acquisition(self, model, x_baseline):
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.acquisition.objective import GenericMCObjective
        from botorch.sampling import SobolQMCNormalSampler

        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([128]), seed=self.seed)
        if self.problem.formulation == "device":
            return qLogNoisyExpectedImprovement(model, x_baseline, sampler=sampler, prune_baseline=True)
        w, offset = self._complexity_linear()
        if self.block_error is not None:
            w = torch.cat([w, torch.zeros(1, dtype=w.dtype)])
        objective = GenericMCObjective(lambda z, X: -(X @ w.to(X) + offset).expand(z.shape[:-1]))
        log_eps = math.log(self.problem.constraints.fidelity)
        return qLogNoisyExpectedImprovement(model, x_baseline, sampler=sampler, objective=objective,
                                            constraints=[lambda z: z[..., 0] - log_eps], prune_baseline=True)

    def _analytic_score(self, model):
        """A cheap acquisition for the local search: log EI of -log fidelity (device), or log of
        (complexity improvement x probability that fidelity meets ε_fid) (paper)."""
        from botorch.acquisition.analytic import LogExpectedImprovement

        if self.problem.formulation == "device":
            best_f = max(-math.log(max(t.fidelity, _FLOOR)) for t in self.trials)
            acq = LogExpectedImprovement(model, best_f=best_f)
            return lambda specs: acq(self._features(specs).unsqueeze(1)).detach()
        w, offset = self._complexity_linear()
        log_eps = math.log(self.problem.constraints.fidelity)
        feasible = [t.objective for t in self.trials if t.feasible]
        best_c = min(feasible) if feasible else None

        def score(specs):
            x = self._features(specs)
            post = model.posterior(x)
            z = (log_eps - post.mean.squeeze(-1)) / post.variance.squeeze(-1).clamp_min(1e-12).sqrt()
            log_pof = torch.special.log_ndtr(z)
            if best_c is None:
                return log_pof.detach()
            gain = best_c - (x[:, : self.enc.dim] @ w + offset)
            return (gain.clamp_min(1e-12).log() + log_pof).detach()
        return score

    def _climbed(self, model, pool: list[ArchSpec]) -> list[ArchSpec]:
        score = self._analytic_score(model)
        best = sorted((t for t in self.trials if t.feasible), key=lambda t: t.objective)[: self.climb_starts]
        starts = [self.problem.space.spec(t.choices) for t in best]
        if pool:
            top = score(pool).topk(min(self.climb_starts, len(pool))).indices.tolist()
            starts += [pool[i] for i in top]
        return [s for s in hill_climb(self.problem, starts, score, self.rng) if s.key not in self.seen]

    def _complexity_linear(self) -> tuple[torch.Tensor, float]:
        """Complexity as offset + w . onehot. Costs are additive over slots, so one-slot changes
        from the all-teacher candidate give the exact weights through the CostModel protocol."""
        if not hasattr(self, "_linear"):
            base_spec = self.problem.space.all_teacher()
            base = self.problem.complexity_of(base_spec)
            w = self.enc.linear_weights(
                lambda slot, choice: 0.0 if choice == "teacher"
                else self.problem.complexity_of(base_spec.with_choice(slot, choice)) - base)
            self._linear = (w, base)
        return self._linear

    def ask(self, n: int) -> list[ArchSpec]:
        import time

        from botorch.optim import optimize_acqf_discrete

        if len(self.trials) < self.n_init:
            out: list[ArchSpec] = []
            for _ in range(n):
                spec = sample_feasible(self.problem, self.rng, self.seen | {s.key for s in out})
                if spec is not None:
                    out.append(spec)
            return out
        t0 = time.perf_counter()
        # BoTorch draws from torch's global generator where no seed is passed (baseline pruning, fit
        # restarts); fork it and seed from (seed, trials so far) so a run's trials depend on its seed
        # alone, not on what else ran in the process (the Ray and in-process searches once parted here).
        with torch.random.fork_rng():
            torch.manual_seed(self.seed * 1_000_003 + len(self.trials))
            model, x = self._fit()
            pool = self._pool(self.seen)
            if self.climb_starts:
                known = {s.key for s in pool}
                pool += [s for s in self._climbed(model, pool) if s.key not in known]
            if not pool:
                return []
            acq = self._acquisition(model, x)
            choices = self._features(pool)
            picked, _ = optimize_acqf_discrete(acq, q=min(n, len(pool)), choices=choices, max_batch_size=512,
                                               unique=True)
        self.last_fit_s = time.perf_counter() - t0
        return [self.enc.decode(row[: self.enc.dim]) for row in picked]
