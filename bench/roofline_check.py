"""How far the roofline is from the card: predictions for the whole UNets a GPU evidence run timed.

`python -m bench.gpu_evidence` measured a cost table on the card: its calibration and held-out candidates are
whole candidate UNets of the SD-2.1-shaped space, each timed end to end. Here each is predicted from a
predicted profile's datasheet constants (`bench.roofline.estimate`, on the meta device: nothing is allocated)
and compared with what the card measured:
  * raw: the datasheet roofline as is, over every measured candidate (nothing is fitted);
  * calibrated: measured ≈ a x roofline time + b x kernel launches + c, fitted (non-negative least squares) on
    the calibration candidates only and judged on the held-out ones. `a` says how far from peak the kernels
    run, `b` what a launch really costs: the two constants a datasheet does not give.
Both report the median |relative error|, the share within ±10% and Spearman's rank correlation, the figure
that matters for a search (it orders candidates). Every figure here is a prediction, labelled so.

    python -m bench.roofline_check --evidence reports/gpu/nvidia-h200/run2-graphs/gpu_evidence.json \\
        --profile hw_profiles/h200-bf16-predicted.yaml --out reports/evidence/roofline-h200
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from bench import roofline
from bench.profile import DeviceProfile, load_profile
from tocsr.core.artifacts import read_artifact, write_artifact
from tocsr.core.errors import ConfigError

EVIDENCE_KIND = "tocsr.gpu_evidence"


@dataclass(frozen=True)
class CandidatePrediction:
    key: str
    role: str                  # "calibration" (fits the calibration) or "holdout" (judges it)
    measured_ms: float         # median on the card
    roofline_ms: float         # sum over kernels of max(flops / peak, bytes / bandwidth), launches excluded
    launches: int
    predicted_ms: float        # the datasheet roofline: roofline_ms + launches x the profile's launch overhead
    calibrated_ms: float | None = None


@dataclass(frozen=True)
class RooflineCheck:
    KIND: ClassVar[str] = "tocsr.bench.roofline_check"
    VERSION: ClassVar[int] = 1

    profile_name: str
    evidence: str
    card: str
    execution_mode: str        # the mode the card measured in
    precision: str
    latent_px: int
    raw: dict[str, float]                 # over every measured candidate
    calibrated: dict[str, float]          # over the held-out candidates
    calibration: dict[str, float]         # compute_scale, launch_us, intercept_ms
    rows: tuple[CandidatePrediction, ...] = field(repr=False)
    label: str = "predicted"
    shipped: dict[str, float] | None = None   # the profile's own calibration (if any), over the held-out candidates

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("profile_name", "evidence", "card", "execution_mode", "precision",
                                           "latent_px", "raw", "calibrated", "calibration", "label", "shipped")}
        return {**d, "rows": [r.__dict__ for r in self.rows]}

    def save(self, path: str | Path, env: dict[str, Any]) -> Path:
        write_artifact(path, self.KIND, self.VERSION, self.to_dict(), environment=env)
        return Path(path)

    def describe(self) -> list[str]:
        def fmt(s: dict[str, float]) -> str:
            return (f"median |error| {100 * s['median_abs_err']:.1f}%, within ±10% {100 * s['within_10pct']:.0f}%, "
                    f"Spearman {s['spearman']:.3f} (n = {s['n']:.0f})")
        c = self.calibration
        return [f"roofline ({self.profile_name}, predicted) vs {self.card} ({self.execution_mode}, measured), "
                f"{self.precision}, {self.latent_px}x{self.latent_px} latents:",
                f"  datasheet constants, every candidate: {fmt(self.raw)}",
                f"  calibrated on {c['n_fit']:.0f} calibration candidates (roofline x {c['compute_scale']:.2f} + "
                f"{c['launch_us']:.2f} us per launch + {c['intercept_ms']:.3f} ms), held-out: {fmt(self.calibrated)}"] + (
                [f"  the profile's own calibration, held-out: {fmt(self.shipped)}"] if self.shipped else [])


def error_summary(measured: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    from scipy.stats import spearmanr

    m, p = np.asarray(measured, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    rel = np.abs(p / m - 1)
    rho = float(spearmanr(m, p).statistic) if len(m) > 2 else float("nan")
    return {"n": float(len(m)), "median_abs_err": float(np.median(rel)), "max_abs_err": float(rel.max()),
            "within_10pct": float(np.mean(rel <= 0.10)), "spearman": rho}


def fit_calibration(rows: Sequence[CandidatePrediction]) -> dict[str, float]:
    """measured ≈ a x roofline_ms + b x launches + c with a, b, c >= 0 (a slower kernel or launch never
    makes a model faster), by non-negative least squares."""
    from scipy.optimize import nnls

    if len(rows) < 3:
        raise ConfigError(f"calibration needs at least 3 calibration candidates, got {len(rows)}")
    x = np.array([[r.roofline_ms, r.launches, 1.0] for r in rows])
    y = np.array([r.measured_ms for r in rows])
    (a, b, c), _ = nnls(x, y)
    return {"compute_scale": float(a), "launch_us": float(b * 1e3), "intercept_ms": float(c), "n_fit": float(len(rows))}


def predict_candidates(space, candidates: Sequence[dict[str, Any]], profile: DeviceProfile, unet_config: dict,
                       cond_tokens: int, latent_px: int, progress=None) -> list[CandidatePrediction]:
    """Each measured candidate (`choices`, `role`, `latency.median_ms`) predicted on the meta device."""
    from tocsr.core.assembly import build_unet
    from tocsr.core.models.unet import unet_example_inputs

    args, kwargs = unet_example_inputs(unet_config, cond_tokens, profile.batch, latent_px, device="meta")
    datasheet = dataclasses.replace(profile.predicted, calibration=None)     # what is judged: the constants alone
    launch_ms = datasheet.launch_overhead_us * 1e-3
    out = []
    for cand in candidates:
        model = build_unet(space, space.spec(cand["choices"]), device="meta")
        est = roofline.estimate(model, args, kwargs, datasheet, profile.precision)
        body = est.latency_ms - est.launch_overhead_ms
        out.append(CandidatePrediction(cand["key"], cand["role"], float(cand["latency"]["median_ms"]), body, est.ops,
                                       body + est.ops * launch_ms))
        if progress:
            progress(len(out))
    return out


def check_against_evidence(evidence: str | Path, profile_ref: str | Path, unet_preset: str = "sd21",
                           section: str = "cost_table:cuda_graphs", limit: int | None = None,
                           progress=None) -> RooflineCheck:
    """The roofline of `profile_ref` (a predicted profile) against one cost-table section of a GPU evidence file."""
    from tocsr.core.models.unet import build_unet_from_preset, get_unet_preset
    from tocsr.core.space import derive_search_space

    profile = load_profile(profile_ref)
    if profile.is_measured:
        raise ConfigError(f"profile {profile.name!r} is measured (device.kind {profile.device.kind!r}); give a "
                          "predicted profile, whose constants are what is checked")
    doc = read_artifact(evidence, EVIDENCE_KIND, 1)
    sections = doc.get("sections", {})
    if section not in sections or "table" not in sections[section]:
        have = ", ".join(k for k, v in sections.items() if isinstance(v, dict) and "table" in v) or "none"
        raise ConfigError(f"{evidence}: no cost table section {section!r} (cost tables there: {have})")
    table = sections[section]["table"]
    if table["precision"] != profile.precision:
        raise ConfigError(f"{evidence}: measured in {table['precision']}, profile {profile.name!r} predicts "
                          f"{profile.precision}; compare like with like")
    preset = get_unet_preset(unet_preset)
    space = derive_search_space(build_unet_from_preset(unet_preset, "meta"))
    if space.space_id != table["space_id"]:
        raise ConfigError(f"{evidence}: space {table['space_id']} is not the {unet_preset!r} preset's "
                          f"({space.space_id}); pass the --unet-preset the evidence was measured with")
    candidates = [c for c in table["candidates"] if c.get("latency")][:limit]
    rows = predict_candidates(space, candidates, profile, dict(preset.config), preset.cond_tokens, table["latent_px"],
                              progress)
    fit_rows = [r for r in rows if r.role == "calibration"]
    held = [r for r in rows if r.role != "calibration"]
    if not held:
        raise ConfigError(f"{evidence}: no held-out candidates to judge a calibration on")
    cal = fit_calibration(fit_rows)
    rows = [CandidatePrediction(**{**r.__dict__, "calibrated_ms": cal["compute_scale"] * r.roofline_ms
                                   + cal["launch_us"] * 1e-3 * r.launches + cal["intercept_ms"]}) for r in rows]
    held = [r for r in rows if r.role != "calibration"]
    own = profile.predicted.calibration
    shipped = error_summary([r.measured_ms for r in held], [own.compute_scale * r.roofline_ms + own.launch_overhead_us
                                                             * 1e-3 * r.launches + own.intercept_ms for r in held]) \
        if own else None
    return RooflineCheck(profile.name, str(evidence), doc.get("card", "?"), table["execution_mode"], table["precision"],
                         int(table["latent_px"]), error_summary([r.measured_ms for r in rows], [r.predicted_ms for r in rows]),
                         error_summary([r.measured_ms for r in held], [r.calibrated_ms for r in held]), cal, tuple(rows),
                         shipped=shipped)


def plot(check: RooflineCheck) -> bytes:
    """Predicted against measured, raw and calibrated, on log axes with the ±10% band."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    m = np.array([r.measured_ms for r in check.rows])
    ax.scatter(m, [r.predicted_ms for r in check.rows], s=14, label="datasheet roofline (every candidate)")
    held = [r for r in check.rows if r.role != "calibration"]
    ax.scatter([r.measured_ms for r in held], [r.calibrated_ms for r in held], s=14, marker="x",
               label="calibrated (held-out candidates)")
    lo, hi = min(m.min(), min(r.predicted_ms for r in check.rows)) * 0.8, m.max() * 1.25
    xs = np.array([lo, hi])
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="grey", alpha=0.2, label="±10%")
    ax.set(xscale="log", yscale="log", xlabel=f"measured on {check.card} ({check.execution_mode}), ms",
           ylabel=f"predicted ({check.profile_name}), ms",
           title=f"roofline vs measured: Spearman raw {check.raw['spearman']:.2f}, calibrated "
                 f"{check.calibrated['spearman']:.2f}")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m bench.roofline_check` (the docs' lines: tests/test_docs_commands.py)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--evidence", required=True, help="a gpu_evidence.json with a cost table section")
    ap.add_argument("--profile", required=True, help="the predicted profile whose constants are checked")
    ap.add_argument("--section", default="cost_table:cuda_graphs")
    ap.add_argument("--unet-preset", default="sd21")
    ap.add_argument("--out", required=True, help="folder for roofline_check.json and roofline_check.png")
    return ap


def main(argv: list[str] | None = None) -> int:
    from tocsr.core.artifacts import atomic_write_bytes
    from tocsr.core.provenance import environment

    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    try:
        check = check_against_evidence(args.evidence, args.profile, args.unet_preset, args.section,
                                       progress=lambda n: print(f"predicted {n} candidates", file=sys.stderr)
                                       if n % 10 == 0 else None)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = Path(args.out)
    check.save(out / "roofline_check.json", environment())
    atomic_write_bytes(out / "roofline_check.png", plot(check))
    print("\n".join(check.describe()))
    print(f"wrote {out / 'roofline_check.json'} and {out / 'roofline_check.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
