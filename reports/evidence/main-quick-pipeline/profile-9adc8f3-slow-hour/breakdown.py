"""Seconds per main-job stage, and within them optimiser steps and backward passes, from a py-spy raw profile.

    py-spy record -r 25 -f raw -o stacks.txt -- tocsr run --profile hw_profiles/cpu-2core.yaml --preset quick --out R
    python breakdown.py stacks.txt 25
"""

import collections
import sys

STAGES = ("train_teacher", "distill", "stage_parts", "stage_costs", "stage_search", "stage_sr_shared", "stage_sr",
          "stage_eval")


def main(path: str, rate: float) -> None:
    total, opt, bwd = collections.Counter(), collections.Counter(), collections.Counter()
    for line in open(path):
        stack, _, n = line.rstrip().rpartition(" ")
        names = [f.split(" (")[0] for f in stack.split(";")]
        stage = next((x for x in names if x in STAGES), "other")
        total[stage] += int(n)
        opt[stage] += int(n) * any("Optimizer.profile_hook_step" in x for x in names)
        bwd[stage] += int(n) * ("Tensor.backward" in names)
    print(f"{'stage':18s} {'sampled s':>10s} {'optimizer.step s':>17s} {'backward s':>11s}")
    for s in (*STAGES, "other"):
        print(f"{s:18s} {total[s] / rate:10.1f} {opt[s] / rate:17.1f} {bwd[s] / rate:11.1f}")
    print(f"{'all':18s} {sum(total.values()) / rate:10.1f} {sum(opt.values()) / rate:17.1f} "
          f"{sum(bwd.values()) / rate:11.1f}")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 25.0)
