"""Train the routed model of a main-job run beside its blind one, each student with its own trained parts.

    python reports/evidence/sr-routed-own-parts/train_routed.py --run runs/quick --out runs/routed

The run's SR model (one blind student with the deployed LR encoder and tiny decoder trained with it) is trained again
as RunPreset.sr_routed trains it: one student per degradation, each on its degradation's pairs for half the blind
student's steps (the same steps in all), each training its own copy of the parts (SRConfig.own_parts), and a router
for the quick preset's router steps. Same run, same shared part (pair cache), same starting parts. Score both on
the run's test photographs with `tocsr eval` (see README.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from search.result import SearchResult  # noqa: E402
from tocsr.core.distill.train import load_surrogates  # noqa: E402
from tocsr.core.space import derive_search_space  # noqa: E402
from tocsr.core.sr.config import SRConfig  # noqa: E402
from tocsr.core.sr.info import SRModelInfo  # noqa: E402
from tocsr.core.sr.parts import DECODER_DIR, ENCODER_DIR, load_parts  # noqa: E402
from tocsr.core.sr.run import run_sr  # noqa: E402
from tocsr.core.teacher.train import load_teacher  # noqa: E402


def first_sr_model(run: Path) -> Path:
    """The run's first SR model folder, <run>/sr/<arch>/ (a one-profile run has one)."""
    return sorted(p.parent for p in (run / "sr").glob("*/sr.json"))[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    run = args.run
    blind = first_sr_model(run)
    info = SRModelInfo.load(blind)
    # the router's steps: SRConfig's default, which RunPreset.sr_router_steps keeps for the quick preset
    cfg = dataclasses.replace(info.config, student_per_degradation=True, router_steps=SRConfig().router_steps,
                              student_steps=max(1, info.config.student_steps // len(info.config.kinds)))
    assert cfg.routes and cfg.own_parts("decoder") == cfg.train_decoder
    # the blind model's architecture and starting parts, as the run's SR stage had them (tocsr.app.stages.stage_sr)
    teacher = load_teacher(run / "teacher")
    space = derive_search_space(teacher.unet)
    spec = space.spec(dict(info.arch.items()))
    bank, _ = load_surrogates(run / "surrogates", space)
    encoder, decoder, record = load_parts(run / "parts")
    searched = SearchResult.load(next(p.parent for p in run.glob("search-*/search_result.json")))
    assert (searched.encoder, searched.decoder) == ("lr", "tiny") == (info.encoder, info.decoder)
    routed = run_sr(teacher, space, spec, bank, args.out, cfg, shared=run / "sr-shared", decoder=decoder,
                    decoder_train_s=record.train_s[DECODER_DIR], encoder=encoder,
                    encoder_train_s=record.train_s[ENCODER_DIR])
    doc = {"blind": {"folder": str(blind), "student_steps": info.config.student_steps, "training_s": info.training_s,
                     "quality": info.quality},
           "routed": {"folder": str(args.out), "student_steps_each": cfg.student_steps, "students": cfg.students,
                      "training_s": routed.training_s, "timings_s": routed.timings_s, "quality": routed.quality}}
    (args.out / "routed_vs_blind.json").write_text(json.dumps(doc, indent=2, default=str))
    for name, d in doc.items():
        print(name, f"{d['training_s']:.0f} s;", "; ".join(
            f"{kind}: " + ", ".join(f"{m} {r['psnr_y']:.2f}" for m, r in rows.items()) for kind, rows in d["quality"].items()))


if __name__ == "__main__":
    main()
