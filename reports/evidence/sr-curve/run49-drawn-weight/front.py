"""The clean / Real-ESRGAN front of SRConfig.drawn_weight: validation dB over bicubic at each curve's points."""
import json
import sys
from pathlib import Path

import matplotlib.pyplot as plt

plt.switch_backend("agg")

here = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
env = json.loads((here / "base" / "sr_curve.json").read_text())["environment"]
code = env["git"]["sha"][:7] + (" + uncommitted changes" if env["git"]["dirty"] else "")
fig, ax = plt.subplots(figsize=(7, 5))
for name, weight in (("dw0.05", 0.05), ("base", 1), ("dw1.5", 1.5), ("dw3", 3), ("dw20", 20)):
    pts = json.loads((here / name / "sr_curve.json").read_text())["points"]
    for p in pts:
        c, r = p["bicubic"]["minus_bicubic"], p["realesrgan"]["minus_bicubic"]
        ax.errorbar(c["mean"], r["mean"], xerr=[[c["mean"] - c["low"]], [c["high"] - c["mean"]]],
                    yerr=[[r["mean"] - r["low"]], [r["high"] - r["mean"]]], fmt="o" if p["step"] == 650 else "s",
                    color={0.05: "C2", 1: "C0", 1.5: "C1", 3: "C3", 20: "C4"}[weight], alpha=1 if p["step"] == 650 else 0.45,
                    label=f"drawn_weight {weight}, {p['step']} steps")
ax.axhline(0.5, ls=":", c="grey")
ax.axvline(1.0, ls=":", c="grey")
ax.axvline(0.0, ls="-", c="k", lw=0.6)
ax.set_xlabel("clean inputs: PSNR-Y minus bicubic (dB)")
ax.set_ylabel("Real-ESRGAN inputs: PSNR-Y minus bicubic (dB)")
ax.set_title(f"Blind student, 16 validation crops per degradation; measured: {env['cpu_model']}, "
             f"{env['cpu_count']} cores\ncode {code}; 95% bootstrap intervals; dotted: issue 26's targets",
             fontsize=8)
ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.35, 0.0))
fig.tight_layout()
fig.savefig(here / "front.png", dpi=120)
