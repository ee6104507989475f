"""SRModelInfo: what an SR model folder (`tocsr sr --out DIR`) holds, read and written only here.

    DIR/sr.json               this record (scale, architecture, degradations, config, quality, provenance)
    DIR/autoencoder/          the 16-channel autoencoder (diffusers folder)
    DIR/student/              the one-step student (one backbone per degradation when trained apart)
    DIR/sr_teacher/<kind>/    the multi-step SR teacher of each degradation, DIR/sr_scheduler/ its schedule
    DIR/tiny-decoder/         the decoder the model deploys when it is not the autoencoder's (`decoder: tiny`)
    DIR/lr-encoder/           the encoder the model deploys when it reads the LR image itself (`encoder: lr`)
    DIR/pixel-branch/         the pixel branch added to the decoder's image (`config.pixel_branch_width` > 0)
    DIR/router/               the degradation router in front of one student per degradation (`config.routes`)

Example:
    >>> info = SRModelInfo.load("runs/quick/sr/<arch key>")
    >>> info.scale, info.arch.key, info.degradations
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tocsr.core.artifacts import FolderRecord
from tocsr.core.errors import ConfigError
from tocsr.core.space import ArchSpec
from tocsr.core.sr.onestep import DECODERS, ENCODERS
from tocsr.core.sr.train import SRConfig


def sr_config_from_dict(d: dict[str, Any]) -> SRConfig:
    """An SRConfig back from JSON (lists become the tuples the dataclass holds)."""
    names = {f.name for f in dataclasses.fields(SRConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"SR config keys {unknown} are not SRConfig fields; this folder was written by another "
                          "version of the suite: train it again with `tocsr sr`")
    return SRConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _unrouted(d: dict[str, Any]) -> dict[str, Any]:
    """A record written before models had routers, as the current schema says it: no router trained."""
    return {**d, "config": {**d["config"], "router_steps": 0}}


def _router_statistics(d: dict[str, Any]) -> dict[str, Any]:
    """A schema-5 record: unchanged where it has no router; a router of schema 5 reads statistics this version no
    longer computes (tocsr.core.sr.router.STATISTICS gained the flattest-block noise), so its weights cannot be read."""
    config = sr_config_from_dict(d["config"])
    if config.routes:
        raise ConfigError("sr.json (schema 5): this model's degradation router reads statistics this version of the "
                          "suite no longer computes; train the model again with `tocsr sr` (or run the main job again)")
    return d


@dataclass(frozen=True)
class SRModelInfo(FolderRecord):
    FILE_NAME: ClassVar[str] = "sr.json"
    KIND: ClassVar[str] = "tocsr.sr_model"
    # 2: where the backbone's weights came from; 3: the decoder deployed; 4: the encoder deployed; 5: the router;
    # 6: the router's statistics read the flattest blocks, and it decides by the students' measured misroute costs
    SCHEMA_VERSION: ClassVar[int] = 6
    REBUILD: ClassVar[str] = "train it again with `tocsr sr --out {folder}`"
    # before 3 every model used the KL decoder, before 4 the KL encoder on the bicubic upscale, before 5 no model had
    # a degradation router (SRConfig.router_steps)
    MIGRATIONS: ClassVar[dict] = {2: lambda d: _unrouted({**d, "decoder": "kl", "encoder": "kl"}),
                                  3: lambda d: _unrouted({**d, "encoder": "kl"}),
                                  4: lambda d: _unrouted(d),
                                  5: _router_statistics}

    scale: int
    arch: ArchSpec
    degradations: tuple[str, ...]                  # one student (and SR teacher) per entry when trained apart
    config: SRConfig
    quality: dict[str, dict[str, dict[str, float]]]    # degradation -> method -> metric
    timings_s: dict[str, float]
    val_images: tuple[str, ...]
    teacher_folder: str
    device: str
    processes: int
    # "teacher + distilled surrogates", or "fine-tuned (<folder>)" when the chosen backbone was fine-tuned
    # as a diffusion model first (tocsr.core.distill.finetune)
    backbone_source: str = "teacher + distilled surrogates"
    # where its pair cache and SR teachers came from: "trained here", or the folder of the run's shared SR
    # part (tocsr.core.sr.shared), whose seconds are in timings_s all the same
    shared_part: str = "trained here"
    # the decoder deployed after the student: "kl" (the autoencoder's) or "tiny" (DIR/tiny-decoder/, distilled from
    # it; tocsr.core.sr.parts), as the search chose for the device's budget
    decoder: str = "kl"
    # the encoder deployed before the student: "kl" (bicubic upscale + the autoencoder's encoder) or "lr"
    # (DIR/lr-encoder/, reading the LR image at LR resolution; the student was trained on its latents)
    encoder: str = "kl"
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    # What the SR stage spent training, the budget the main job's baselines get (its SR teacher included;
    # the base diffusion teacher is the pretrained model the method starts from, as SD is for others).
    TRAINING_PARTS: ClassVar[tuple[str, ...]] = ("pair_cache_s", "sr_teacher_s", "student_s")

    @property
    def training_s(self) -> float:
        missing = [k for k in self.TRAINING_PARTS if k not in self.timings_s]
        if missing:
            raise ConfigError(f"SR model record has no {missing[0]} timing (it has {sorted(self.timings_s)}); "
                              "train it again with `tocsr sr`")
        # a student that never asked the SR teachers (no teacher term) did not cost their training: they were trained
        # for the report's multi-step row only
        parts = [k for k in self.TRAINING_PARTS if k != "sr_teacher_s" or self.config.uses_sr_teachers]
        # the deployed stand-in parts were trained for this model too (their distillation, in the parts stage);
        # the LR encoder's latents of the pairs were computed for its student; the router was trained for its students
        extra = sum(self.timings_s.get(k, 0.0) for k in ("decoder_s", "encoder_s", "encoder_inputs_s", "router_s"))
        return float(sum(self.timings_s[k] for k in parts) + extra)

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ConfigError(f"SRModelInfo.decoder = {self.decoder!r}: expected 'kl' or 'tiny'")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"SRModelInfo.encoder = {self.encoder!r}: expected 'kl' or 'lr'")

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "arch": self.arch.to_dict(), "degradations": list(self.degradations),
                "config": dataclasses.asdict(self.config), "quality": self.quality, "timings_s": self.timings_s,
                "val_images": list(self.val_images), "teacher_folder": self.teacher_folder, "device": self.device,
                "processes": self.processes, "backbone_source": self.backbone_source,
                "shared_part": self.shared_part, "decoder": self.decoder, "encoder": self.encoder}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SRModelInfo:
        return cls(scale=int(d["scale"]), arch=ArchSpec.from_dict(d["arch"]), degradations=tuple(d["degradations"]),
                   config=sr_config_from_dict(d["config"]), quality=d["quality"], timings_s=d["timings_s"],
                   val_images=tuple(d["val_images"]), teacher_folder=d["teacher_folder"], device=d["device"],
                   processes=int(d["processes"]), backbone_source=d["backbone_source"],
                   shared_part=d.get("shared_part", "trained here"), decoder=str(d["decoder"]),
                   encoder=str(d["encoder"]),
                   environment=d.get("environment", {}))

    @classmethod
    def load(cls, folder: str | Path) -> SRModelInfo:
        root = Path(folder)
        if not (root / cls.FILE_NAME).is_file():
            raise ConfigError(f"{root}: not an SR model folder (no {cls.FILE_NAME}); train one with `tocsr sr`")
        return super().load(root)
