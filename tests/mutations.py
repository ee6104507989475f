"""Break the suite's key decisions one at a time and check that a test fails for each (`nox -s mutants`).

A test suite can pass and still not look at what matters. Each mutation below changes one decision a user relies
on: the budget a candidate must meet, the guard, the ±10% figure, the paired difference and its verdict, the
baselines' training seconds, the nightly's noise bar, the timing's pairing. The tests named with it must fail
once it is applied. A mutation that survives means the decision is untested: write the test that catches it.

Each mutation is applied to a copy of the working tree in a temporary folder (the checkout is never changed) and
the named tests run there with the interpreter running this script. Exit status 1 when any mutation survives or
no longer applies (the code moved: update its text here).

    python tests/mutations.py [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str                 # relative to the repository root
    old: str                  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]    # pytest arguments that must fail once the mutation is applied


MUTATIONS = (
    Mutation("a candidate 20% over the latency budget meets it", "search/selection.py",
             "ok = budgets.latency_ms is None or lat <= budgets.latency_ms",
             "ok = budgets.latency_ms is None or lat <= budgets.latency_ms * 1.2", ("tests/search/test_selection.py",)),
    Mutation("the measured peak memory is not judged", "search/selection.py",
             "ok = ok and m.peak_memory_mib is not None and m.peak_memory_mib <= budgets.peak_memory_mib",
             "ok = ok", ("tests/search/test_selection.py",)),
    Mutation("the measured energy is not judged", "search/selection.py",
             "ok = ok and m.energy_mj_per_inference is not None and m.energy_mj_per_inference <= budgets.energy_mj",
             "ok = ok", ("tests/search/test_selection.py",)),
    Mutation("the latency guard is ignored", "bench/profile.py",
             "return None if budget_ms is None else budget_ms * (1 - guard)",
             "return None if budget_ms is None else budget_ms", ("tests/search/test_selection.py",)),
    Mutation("the ±10% figure counts errors within 20%", "bench/costtable.py",
             '"within_10pct": float((abs_err <= 0.10).mean())', '"within_10pct": float((abs_err <= 0.20).mean())',
             ("tests/bench/test_costtable.py",)),
    Mutation("every cost table passes its bar", "bench/costtable.py",
             '"passes": bool(within >= bar.share), "bar": bar.describe()}', '"passes": True, "bar": bar.describe()}',
             ("tests/bench/test_costtable.py",)),
    Mutation("a paired reading divides by the whole run's reference, not its round's", "bench/timing.py",
             "rel += [t / yardstick for t in tgt_r]", "rel += [t / float(np.median(ref)) for t in tgt_r]",
             ("tests/bench/test_timing.py",)),
    Mutation("a percentile of a paired reading is its median", "bench/stats.py",
             "return float(np.percentile(self._rel(), q))", "return float(np.percentile(self._rel(), 50))",
             ("tests/bench/test_stats.py", "tests/bench/test_timing.py", "tests/bench/test_costtable.py")),
    Mutation("the step plan ignores its floor", "tocsr/core/timebudget.py",
             "return min(1.0, max(floor, room_s / scalable_s))", "return min(1.0, room_s / scalable_s)",
             ("tests/core/test_timebudget.py",)),
    Mutation("the students' plan forgets the seconds already spent", "tocsr/core/timebudget.py",
             "scale = _fit(plan.budget_s - spent_s - fixed, scalable, plan.floor)",
             "scale = _fit(plan.budget_s - fixed, scalable, plan.floor)", ("tests/core/test_timebudget.py",)),
    Mutation("the baselines get the shortest SR stage's seconds", "reports/comparison.py",
             "return max(infos, key=lambda info: info.training_s)",
             "return min(infos, key=lambda info: info.training_s)", ("tests/reports/test_comparison.py",)),
    Mutation("a baseline trains past its seconds", "tocsr/core/baselines.py",
             "if (budget_s is not None and elapsed >= budget_s) or",
             "if (budget_s is not None and elapsed >= 2 * budget_s) or", ("tests/core/test_baselines.py",)),
    Mutation("a paired difference is the first method's mean", "reports/intervals.py",
             "return bootstrap_mean(a - b, level, resamples, seed)", "return bootstrap_mean(a, level, resamples, seed)",
             ("tests/reports/test_protocol.py",)),
    Mutation("an interval below 0 does not exclude it", "reports/intervals.py",
             "return self.low > 0 or self.high < 0", "return self.low > 0", ("tests/reports/test_verdicts.py",)),
    Mutation("'behind' is read from the mean", "reports/verdicts.py",
             'if diff["high"] < 0:\n        return f"{ours} is behind {theirs}"',
             'if diff["mean"] < 0:\n        return f"{ours} is behind {theirs}"', ("tests/reports/test_verdicts.py",)),
    Mutation("external checkpoints are not baselines", "reports/protocol.py",
             'return self._best(("baseline", "external"), metric)', 'return self._best(("baseline",), metric)',
             ("tests/reports/test_protocol.py",)),
    Mutation("the nightly's noise bar ignores the nights' spread", "reports/nightly.py",
             "return max(min_step, noise_k * spread)", "return min_step", ("tests/reports/test_nightly.py",)),
    Mutation("a nightly step within an earlier night's reading is flagged", "reports/nightly.py",
             "if step > threshold and above_all and p < p_value:", "if step > threshold and p < p_value:",
             ("tests/reports/test_nightly.py",)),
    Mutation("a report row over the budget is not called out", "tocsr/app/mainjob.py",
             "if budget is None or row <= budget:", "if True:", ("tests/app/test_summary.py",)),
    Mutation("the core probe is not taken beside a CPU reading", "bench/measure.py",
             'probe = partial(effective_cores, torch.get_num_threads()) if device.type == "cpu" else None',
             "probe = None", ("tests/reports/test_reports.py",)),
    Mutation("a relative budget is one reading of the teacher as shipped", "search/selection.py",
             "n = readings if profile.budgets.latency_vs_teacher is not None and profile.is_measured else 1", "n = 1",
             ("tests/search/test_selection.py",)),
    Mutation("a device reads the student of a profile whose name starts with its own", "reports/rows.py",
             'return name == tocsr_method_name(profile_name) or name.startswith(f"{TOCSR_METHOD} ({profile_name}, ")',
             'return name.startswith(f"{TOCSR_METHOD} ({profile_name}")', ("tests/reports/test_verdicts.py",)),
    Mutation("CPU peak memory is the resident growth, which depends on the process's history", "bench/memory.py",
             "    growth = allocated_growth_mib(fn)\n",
             "    return _resident_growth(fn, weights)\n", ("tests/bench/test_measure.py",)),
    Mutation("CPU timing starts from glibc's initial mmap threshold, not the stated state", "bench/allocator.py",
             "mmap_bytes, trim_bytes = GLIBC_MMAP_THRESHOLD_MAX_BYTES, 2 * GLIBC_MMAP_THRESHOLD_MAX_BYTES",
             "mmap_bytes, trim_bytes = 128 * 1024, 2 * GLIBC_MMAP_THRESHOLD_MAX_BYTES", ("tests/bench/test_allocator.py",)),
    Mutation("the search's target follows the teacher as shipped read against the UNet at the decision's moment",
             "search/selection.py", "    at_ms = shipped.predict_latency_at_ms(teacher)\n",
             "    at_ms = decision.teacher_at_ms\n", ("tests/search/test_selection.py",)),
    Mutation("a model biased high steers the search below the budget the measurements show is free",
             "search/selection.py", "        if problem.costs(cheapest).latency_ms > latency_target or over > biased_high:",
             "        if problem.costs(cheapest).latency_ms > latency_target:", ("tests/search/test_selection.py",)),
    Mutation("the first round ignores a model biased high within its tolerance", "search/selection.py",
             "biased_high = 1 + (table.bar.tolerance if cfg.upward_step == UPWARD_BEYOND_TOLERANCE else 0.0)",
             "biased_high = 1 + table.bar.tolerance", ("tests/search/test_selection.py",)),
    Mutation("the first round's step reads the model's bias at the cheapest alone, not near the target",
             "search/selection.py", "    near = sorted(pool, key=lambda s: abs(before.costs(s).latency_ms - latency_target))[:cfg.bias_probes]\n",
             "    near = []\n", ("tests/search/test_selection.py",)),
    Mutation("candidates near the target step the search even where the refit puts the measured cheapest over it",
             "search/selection.py", "    if refit.costs(cheapest).latency_ms > latency_target or not overs:\n",
             "    if not overs:\n", ("tests/search/test_selection.py",)),
    Mutation("a fixed search bound is ignored: the search follows each round's bound", "search/selection.py",
             "        trials = search_round(problem, cap) if searched is None else rescore(search_round(searched, cap), problem)\n",
             "        trials = search_round(problem, cap)\n", ("tests/search/test_selection.py",)),
    Mutation("a fixed search whose trials are all over the round's bound stays fixed and ships the cheapest",
             "search/selection.py", "        if searched is not None and not ranked:\n",
             "        if False:\n", ("tests/search/test_selection.py",)),
    Mutation("a share of the teacher as shipped is its median ratio, not its percentile over the model's",
             "search/selection.py", "        return self.ms_at_decision(paired) / self.teacher_at_ms\n",
             "        return paired.ratio\n", ("tests/reports/test_reports.py",)),
    Mutation("the report row of a choice judged on its share is judged in milliseconds against the budget",
             "tocsr/app/mainjob.py", '    if judged_on_share(d) and d.get("report_row_share") is not None:\n        budget',
             '    if False:\n        budget', ("tests/app/test_summary.py",)),
)


def _copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored), so local changes are mutated too."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    for rel in filter(None, out.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run(mutation: Mutation, tree: Path) -> tuple[str, str]:
    """("killed" | "survived" | "stale", the last line pytest printed or why it is stale)."""
    path = tree / mutation.path
    source = path.read_text()
    if source.count(mutation.old) != 1:
        return "stale", f"{mutation.path}: the text to mutate occurs {source.count(mutation.old)} times, not once"
    path.write_text(source.replace(mutation.old, mutation.new))
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutation.tests],
                              cwd=tree, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        path.write_text(source)
    lines = done.stdout.strip().splitlines()
    last = lines[-1] if lines else done.stderr.strip()[-300:]
    if done.returncode == 5 or "no tests ran" in last:       # a renamed test file must not read as a kill
        return "stale", f"no tests ran: {' '.join(mutation.tests)}"
    return ("killed" if done.returncode != 0 else "survived"), last


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run the mutations whose name contains this")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only in m.name]
    bad = 0
    with tempfile.TemporaryDirectory(prefix="tocsr-mutants-") as tmp:
        tree = Path(tmp)
        _copy_tree(tree)
        for i, m in enumerate(chosen, 1):
            t0 = time.perf_counter()
            verdict, last = run(m, tree)
            bad += verdict != "killed"
            print(f"[{i}/{len(chosen)}] {verdict.upper():8s} {m.name} ({m.path}; {time.perf_counter() - t0:.0f} s): "
                  f"{last}", flush=True)
    print(f"{len(chosen) - bad} of {len(chosen)} mutations caught" + (f"; {bad} not: see above" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
