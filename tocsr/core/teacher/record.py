"""TeacherRecord: what a teacher run folder's teacher.json holds, read and written only here.

    DIR/teacher.json    this record: preset, data and split, the autoencoder's and the diffusion UNet's
                        held-out figures, the sample check, timings, provenance

Example:
    >>> record = TeacherRecord.load("runs/quick/teacher")
    >>> record.samples.beats_noise, record.autoencoder.margin_db
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tocsr.core.artifacts import FolderRecord
from tocsr.core.teacher.autoencoder_train import AutoencoderReport
from tocsr.core.teacher.diffusion_train import DiffusionReport


@dataclass(frozen=True)
class TeacherSamples:
    """The teacher's own generation check: DDIM samples from fixed noise, scored against held-out data.

    Two features, each bracketed by Gaussian-noise latents and by training latents scored against the
    same held-out set: a teacher that generates sits far below noise and near the training latents.
    * latent KID (4x4-pooled latents): compares what the photographs show, so on a handful of held-out
      photographs even training latents score nearly as badly as noise; kept for the record.
    * spectrum KID (decoded images' radial power spectra, `evaluate.image_spectrum_features`): separates
      real images from decoded noise by an order of magnitude; the pass/fail check uses this one.
    Each KID is (mean, std over random subsets); a generated one is None when the samples diverged.
    """

    png: str
    n_for_kid: int
    samples_finite: bool
    sampler: str
    latent_kid_generated_vs_val: tuple[float, float] | None
    latent_kid_train_vs_val: tuple[float, float]
    latent_kid_gaussian_noise_vs_val: tuple[float, float]
    spectrum_kid_generated_vs_val: tuple[float, float] | None
    spectrum_kid_train_vs_val: tuple[float, float]
    spectrum_kid_noise_vs_val: tuple[float, float]

    @property
    def beats_noise(self) -> bool:
        """Issue 22's bar, on the feature that can pass it: generated-vs-held-out spectrum KID at most half
        of decoded-noise-vs-held-out (means)."""
        return (self.spectrum_kid_generated_vs_val is not None
                and self.spectrum_kid_generated_vs_val[0] <= 0.5 * self.spectrum_kid_noise_vs_val[0])

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeacherSamples:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class TeacherRecord(FolderRecord):
    FILE_NAME: ClassVar[str] = "teacher.json"
    KIND: ClassVar[str] = "tocsr.teacher"
    SCHEMA_VERSION: ClassVar[int] = 2        # 2: the spectrum KID check (issue 22)
    REBUILD: ClassVar[str] = "train it again with `tocsr teacher train --out {folder}`"

    preset: str
    preset_config: dict[str, Any]       # the preset as trained, for the record (the code reads presets by name)
    data: dict[str, Any]                # DataReport.to_dict(): source, counts, what was skipped
    split_train: tuple[str, ...]
    split_val: tuple[str, ...]
    autoencoder: AutoencoderReport
    diffusion: DiffusionReport
    samples: TeacherSamples
    timings_s: dict[str, float]
    device: str
    threads: int
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def data_source(self) -> str | None:
        """The photo folder the teacher was trained on, or None for the embedded default photos."""
        source = str(self.data["source"])
        return None if source.startswith("embedded") else source

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "preset_config": self.preset_config, "data": self.data,
                "split": {"train": list(self.split_train), "val": list(self.split_val)},
                "autoencoder": dataclasses.asdict(self.autoencoder) | {"margin_over_bicubic_x4_db": self.autoencoder.margin_db},
                "diffusion": dataclasses.asdict(self.diffusion), "samples": self.samples.to_dict(),
                "timings_s": self.timings_s, "device": self.device, "threads": self.threads}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeacherRecord:
        ae = {k: v for k, v in d["autoencoder"].items() if k != "margin_over_bicubic_x4_db"}
        return cls(preset=d["preset"], preset_config=d["preset_config"], data=d["data"],
                   split_train=tuple(d["split"]["train"]), split_val=tuple(d["split"]["val"]),
                   autoencoder=AutoencoderReport(**ae), diffusion=DiffusionReport(**d["diffusion"]),
                   samples=TeacherSamples.from_dict(d["samples"]), timings_s=d["timings_s"], device=d["device"],
                   threads=int(d["threads"]), environment=d.get("environment", {}))

    def describe(self, folder: str | Path) -> list[str]:
        """What `tocsr teacher train` prints."""
        ae, diff, s = self.autoencoder, self.diffusion, self.samples
        def fmt(k: tuple[float, float] | None) -> str:
            return "diverged" if k is None else f"{k[0]:.3f} ± {k[1]:.3f}"

        return [f"autoencoder ({ae.source}): {ae.val_psnr_db:.2f} dB held-out PSNR vs bicubic x4 "
                f"{ae.bicubic_x4_psnr_db:.2f} dB ({ae.margin_db:+.2f} dB)",
                f"teacher: held-out denoising error {diff.val_error_trained['mean']:.4f} "
                f"(untrained {diff.val_error_untrained['mean']:.4f}); samples {Path(folder) / s.png}",
                f"samples ({s.sampler}, n={s.n_for_kid}) vs held-out, KID of image spectra: generated "
                f"{fmt(s.spectrum_kid_generated_vs_val)}, decoded noise {fmt(s.spectrum_kid_noise_vs_val)}, "
                f"training latents {fmt(s.spectrum_kid_train_vs_val)}: generated "
                f"{'beats' if s.beats_noise else 'does NOT beat'} noise by 2x (latent KID, content-bound: "
                f"{fmt(s.latent_kid_generated_vs_val)} / {fmt(s.latent_kid_gaussian_noise_vs_val)} / "
                f"{fmt(s.latent_kid_train_vs_val)})",
                f"wrote {Path(folder) / self.FILE_NAME} in {self.timings_s['total_s']:.0f} s"]
