"""Predicted vs measured whole one-step SR pipelines (held out), from the files in this folder.

    python reports/evidence/pipeline-costs-cpu/plot.py   # writes pipeline_holdout.png beside it
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.pipeline import load_cost_model  # noqa: E402

here = Path(__file__).resolve().parent
model = load_cost_model(here / "cpu-2core.json", "pipeline")
held = model.holdout()
ref = model.table.reference_ms
measured = [c.latency.ratio * ref for c in held]
predicted = [m * (1 + e) for m, e in zip(measured, model.errors(held), strict=True)]
fixed = model.pipeline.fixed_ratio * ref
fig, ax = plt.subplots(figsize=(5, 5))
lo, hi = min(measured + predicted) * 0.95, max(measured + predicted) * 1.05
ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="exact")
ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.9", label="±10%")
ax.scatter(measured, predicted, s=14, label=f"{len(held)} held-out pipelines")
ax.axhline(fixed, color="tab:red", ls="--", lw=0.8, label=f"fixed parts alone ({fixed:.1f} ms)")
ax.set_xlabel("measured median, ms (paired with the teacher UNet)")
ax.set_ylabel("predicted median, ms (fixed parts + backbone table)")
ax.set_title("one-step SR call on cpu-2core (measured)")
ax.legend(fontsize=7, loc="upper left")
fig.tight_layout()
fig.savefig(here / "pipeline_holdout.png", dpi=120)
