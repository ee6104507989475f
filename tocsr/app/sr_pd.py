"""Variants of the one-step student against distortion and perceived quality, on validation photographs.

    python -m tocsr.app.sr_pd --run runs/quick --out runs/sr-pd --w-adv 0 0.002 0.02 0.2
    python -m tocsr.app.sr_pd --run runs/quick --out runs/sr-ablation \
        --variant run --variant no-teachers w_teacher=0 student_steps=700

Trains the student of a run's first SR model again from the run's shared part `sr-shared/` once per variant
(same architecture, seed and every other setting: only what the variant names changes; a variant that names a
setting of the shared part, e.g. `pair_cache=4096`, trains its own shared part and counts it), then scores every
student with the evaluation protocol (reports.protocol.evaluate_folder) on the validation photographs, whole (the
centre of at most `--max-px` a side), each degradation of the run: PSNR-Y and the no-reference scores whose
weights are here (NIQE always: its parameters ship with the suite), each with a 95% bootstrap interval over the
photographs, and paired differences to bicubic and to the first variant. Bicubic, the run's trained baselines
(<run>/baselines/: each student's paired difference to each, and their training seconds and steps beside the
variants' budgets; `--no-baselines` leaves them out) and, with `--with-teacher`, the SR teacher are scored on the
same images.

A variant is a label and SRConfig fields (`KEY=VALUE`), and optionally `parts=DIR`: the pipeline parts of another
`python -m tocsr.app.parts` folder in place of the run's (the same kinds the run's model deploys; their training
seconds join the variant's budget). Without it a variant starts from the parts the run's student started from
(tocsr.app.sr_curve.run_parts: the run's `parts/` where its config trains them, not the copies its student
trained). With `backbone=teacher` the student's backbone is the teacher-shaped one (every block the teacher's: the
widest of the space) and with `backbone=FILE` the architecture a JSON file names (ArchSpec.to_json), in place of the
run's choice: what a wider or another backbone would buy, at whatever it costs per call (not timed here, and it may
not fit the run's budget). `train_photographs=N` trains on the first N training photographs only (its own shared
part; give it `parts=DIR` from `python -m tocsr.app.parts --train-photographs N` so the parts see the same ones): what
more photographs would buy. `--w-adv W...` is the sweep of the adversarial weight
(`SRConfig.w_adv`), one variant per weight (pass 0 first: "the same student trained without the term"). Each
variant's training budget (SRModelInfo.training_s: what its SR stage cost, the shared part included, the SR
teachers only when its student learns from them) is recorded beside its scores: variants compared "at equal
seconds" are so only when those budgets agree, which the table shows.

A variant with one student per degradation (`student_per_degradation=true`) trains its DegradationRouter too
(tocsr.core.sr.router; `router_steps`, 0 for none), as the SR stage does: its row "student LABEL" is then blind, the
router reading each whole validation photograph once and the student of its answer running, with the router's
seconds in its budget; the row "student LABEL told" scores the same students told the truth (what a perfect router
would give). What the router decided per photograph, and its probability of each degradation, is in sr_pd.json
("routing").

Validation, not test: the sweep is for choosing settings, and the test photographs stay unseen by every
choice (the main job's report scores them). Writes <out>/sr_pd.json, <out>/sr_pd.png (a perception-distortion
plot per degradation) and the per-image tables under <out>/val-<degradation>/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from tocsr.app.sr_curve import first_sr_model, run_parts
from tocsr.core.artifacts import atomic_write_bytes, write_artifact
from tocsr.core.errors import ConfigError
from tocsr.core.provenance import environment

KIND = "tocsr.sr_pd"
DEFAULT_WEIGHTS = (0.0, 0.002, 0.02, 0.2)
PARTS_KEY = "parts"            # a variant's pipeline parts folder (module doc), not an SRConfig field
BACKBONE_KEY = "backbone"      # a variant's backbone (module doc), not an SRConfig field
OWN_KEYS = (PARTS_KEY, BACKBONE_KEY)


def _student_name(label: str) -> str:
    return f"student {label}"


def _told_name(label: str) -> str:
    return f"student {label} told"


def weight_variants(weights: list[float]) -> dict[str, dict[str, Any]]:
    """The adversarial weight sweep as variants: "w_adv=W" -> {"w_adv": W}."""
    if not weights:
        raise ConfigError("--w-adv: give at least one weight (0 first, to compare with no adversarial term)")
    if any(w < 0 for w in weights) or len(set(weights)) != len(weights):
        raise ConfigError(f"--w-adv {weights}: weights must be distinct and >= 0")
    return {f"w_adv={w:g}": {"w_adv": w} for w in weights}


def parse_variant(words: list[str]) -> tuple[str, dict[str, Any]]:
    """["LABEL", "KEY=VALUE", ...] -> (LABEL, {KEY: VALUE}), each value typed as the SRConfig field it sets."""
    from tocsr.core.sr.config import parse_field

    if not words or "=" in words[0]:
        raise ConfigError(f"--variant {' '.join(words)}: start with a label, then SRConfig fields as KEY=VALUE")
    out: dict[str, Any] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if sep and key in OWN_KEYS:
            out[key] = value
            continue
        try:
            key, out[key] = parse_field(word, f"--variant {words[0]}")
        except ConfigError as e:
            raise ConfigError(f"{e} (or {PARTS_KEY}=DIR: another parts folder; {BACKBONE_KEY}=teacher|FILE: another "
                              "backbone)") from None
    return words[0], out


def variant_backbone(space, run_spec, value: str | None, what: str):
    """The backbone a variant's student has: the run's (None), the teacher-shaped one ("teacher": every slot keeps
    its teacher block, the widest this space holds), or the one a JSON file names (ArchSpec.to_json's {"choices":
    {slot: choice}}, e.g. the "spec" of a candidate in the run's search_result.json, saved to its own file)."""
    import json

    from tocsr.core.space import ArchSpec

    if value is None:
        return run_spec
    if value == "teacher":
        return space.all_teacher()
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{what}={value}: neither 'teacher' nor a JSON file holding {{\"choices\": {{slot: choice}}}}")
    try:
        return ArchSpec.from_dict(json.loads(path.read_text()), space)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{what}={value}: not an architecture ({e}); write one as ArchSpec.to_json does") from None


def sweep(run: Path, out: Path, variants: dict[str, dict[str, Any]] | list[float], max_px: int = 384,
          with_teacher: bool = False, data: Path | None = None, student_steps: int | None = None,
          baselines: bool = True) -> dict[str, Any]:
    """`variants`: label -> SRConfig fields, the first the reference of the paired differences; a list of numbers is
    the adversarial weight sweep (weight_variants). A variant whose model routes (SRConfig.routes) is scored blind
    behind its router and, as "student LABEL told", told the truth (module doc). `baselines`: score the run's trained
    baselines on the same photographs, and every student minus each of them."""
    from reports.comparison import eval_method, load_sr_methods, write_split_folder
    from reports.metrics import FULL_REFERENCE, NO_REFERENCE
    from reports.protocol import baseline_method, evaluate_folder, find_images, interpolation
    from tocsr.core.distill.train import load_surrogates
    from tocsr.core.space import derive_search_space
    from tocsr.core.sr.info import SRModelInfo
    from tocsr.core.sr.run import run_sr
    from tocsr.core.sr.shared import SHARED_FIELDS
    from tocsr.core.teacher.train import load_teacher

    if not isinstance(variants, dict):
        variants = weight_variants(list(variants))
    if not variants:
        raise ConfigError("no variant to train: give --variant LABEL [KEY=VALUE ...] or --w-adv W ...")
    model = first_sr_model(run)
    info = SRModelInfo.load(model)
    cfg = dataclasses.replace(info.config, checkpoint_every=10**9,
                              student_steps=student_steps or info.config.student_steps)
    teacher = load_teacher(run / "teacher")
    space = derive_search_space(teacher.unet)
    spec = space.spec(dict(info.arch.items()))
    bank, _ = load_surrogates(run / "surrogates", space)
    trained: dict[str, dict[str, Any]] = {}
    methods = []
    routed: list[str] = []                # the labels of the variants whose model routes
    for i, (label, fields) in enumerate(variants.items()):
        folder = out / label.replace("=", "-").replace(" ", "_")
        t = time.perf_counter()
        # the deployed parts (the run's, or the variant's own folder), and what they cost to train: in every
        # variant's budget, as in the run's model's
        start = run_parts(run, model, info, fields.get(PARTS_KEY), f"--variant {label} {PARTS_KEY}")
        backbone = variant_backbone(space, spec, fields.get(BACKBONE_KEY), f"--variant {label} {BACKBONE_KEY}")
        # A variant that changes what the shared part is made with (its pair cache, its SR teachers) trains its own
        # in its folder; the seconds it takes join that variant's budget, as the run's shared part joins the run's.
        own_shared = sorted(set(fields) & set(SHARED_FIELDS))
        if own_shared:
            print(f"{label}: trains its own shared part ({', '.join(own_shared)} differ from the run's)", flush=True)
        run_sr(teacher, space, backbone, bank, folder,
               dataclasses.replace(cfg, **{k: v for k, v in fields.items() if k not in OWN_KEYS}), data,
               shared=None if own_shared else run / "sr-shared", decoder=start.decoder,
               decoder_train_s=start.decoder_train_s, encoder=start.encoder, encoder_train_s=start.encoder_train_s)
        trained_info = SRModelInfo.load(folder)
        trained[label] = {"folder": str(folder), "fields": fields, "wall_s": time.perf_counter() - t,
                          "shared_part": "own" if own_shared else "the run's", "parts_from": start.source,
                          "student_s": trained_info.timings_s["student_s"],
                          "training_budget_s": trained_info.training_s,
                          "student_steps": trained_info.config.student_steps, "arch_key": backbone.key}
        ms, _ = load_sr_methods(teacher, folder, "validation", with_teacher=with_teacher and i == 0)
        student_method = dataclasses.replace(ms[0], name=_student_name(label))
        methods += [student_method, *ms[1:]]
        if trained_info.config.routes:
            routed.append(label)
            trained[label]["router_s"] = trained_info.timings_s["router_s"]
            methods.append(dataclasses.replace(student_method, name=_told_name(label),
                                               module=student_method.module.model))
        print(f"{label}: student {trained[label]['student_s']:.0f} s, training budget "
              f"{trained[label]['training_budget_s']:.0f} s", flush=True)
    # The run's baselines, trained for its SR stage's seconds on the same photographs: where a variant stands against
    # them is then known from validation photographs, without a look at the test ones.
    found = sorted(p.parent for p in (run / "baselines").glob("*/baseline.json")) if baselines else []
    rivals = [baseline_method(f"{folder.name}={folder}", cfg.scale) for folder in found]
    rival_training = {folder.name: json.loads((folder / "baseline.json").read_text()) for folder in found}
    routing: dict[str, dict[str, Any]] = {}
    val_dir = out / "val" / "HR"
    names = write_split_folder(data, teacher.preset.split, val_dir, max_px, cfg.scale, part="val")
    images = find_images(val_dir, None, cfg.scale)
    rows: dict[str, dict[str, Any]] = {}
    for kind in cfg.kinds:
        decisions: dict[str, list[str]] = {_student_name(label): [] for label in routed}
        sure: dict[str, list[dict[str, float]]] = {name: [] for name in decisions}
        res = evaluate_folder(images, [interpolation("bicubic", cfg.scale)]
                              + [eval_method(m, kind, cfg.scale, decisions.get(m.name), sure.get(m.name))
                                 for m in methods] + rivals, cfg.scale,
                              kind, seed=0, extra_metrics=FULL_REFERENCE + NO_REFERENCE, hr_dir=str(val_dir))
        for label in routed:
            got = decisions[_student_name(label)]
            routing.setdefault(label, {})[kind] = {"photographs": len(got), "routed_right": sum(k == kind for k in got),
                                                   "decisions": got, "probabilities": sure[_student_name(label)]}
        res.save(out / f"val-{kind}", environment())
        nr = next((k for k in NO_REFERENCE if k in res.metrics()), None)
        per: dict[str, Any] = {"no_reference_metric": nr, "unavailable": dict(res.unavailable), "methods": {}}
        first = _student_name(next(iter(variants)))
        for name in ["bicubic"] + [m.name for m in methods] + [r.name for r in rivals]:
            entry: dict[str, Any] = {k: res.interval(name, k).to_dict() for k in res.metrics()}
            if name != "bicubic":
                entry["minus_bicubic"] = {k: res.paired(name, "bicubic", k).to_dict() for k in res.metrics()}
            if name.startswith("student"):
                for other in ([first] if name != first else []) + [r.name for r in rivals]:
                    entry[f"minus_{other}"] = {k: res.paired(name, other, k).to_dict() for k in res.metrics()}
            per["methods"][name] = entry
        rows[kind] = per
    doc = {"run": str(run), "sr_model": str(model), "arch_key": info.arch.key, "config": dataclasses.asdict(cfg),
           "variants": variants, "trained": trained, "baselines": rival_training, "split": "val", "routing": routing,
           "val_images": names, "max_px": max_px, "results": rows,
           "interval": "95% bootstrap over the validation photographs (paired where a difference is given)"}
    write_artifact(out / "sr_pd.json", KIND, 1, doc, environment=environment())
    from reports.plots import perception_distortion_plot

    atomic_write_bytes(out / "sr_pd.png", perception_distortion_plot(doc))
    return doc


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m tocsr.app.sr_pd` (the docs' lines: tests/test_docs_commands.py)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a main-job folder (teacher/, surrogates/, sr-shared/, sr/)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--w-adv", type=float, nargs="+",
                    help="adversarial weights, the first the reference of the paired differences (0: no term); "
                         f"without --variant the default is {' '.join(f'{w:g}' for w in DEFAULT_WEIGHTS)}")
    ap.add_argument("--variant", nargs="+", action="append", metavar="LABEL [KEY=VALUE]",
                    help="a student variant: a label and the SRConfig fields it changes (repeat; the first is the "
                         "reference)")
    ap.add_argument("--student-steps", type=int, help="default: the run's")
    ap.add_argument("--max-px", type=int, default=384, help="validation photographs: centre crop of at most this")
    ap.add_argument("--with-teacher", action="store_true", help="score the multi-step SR teacher too (slow)")
    ap.add_argument("--data", type=Path, help="the run's --data folder, if it had one")
    ap.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                    help="score the run's trained baselines (<run>/baselines/) on the same photographs, and every "
                         "student minus each")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.w_adv and args.variant:
        raise ConfigError("give either --w-adv W ... or --variant LABEL [KEY=VALUE ...] (repeated), not both")
    variants = dict(parse_variant(v) for v in args.variant) if args.variant else weight_variants(
        args.w_adv or list(DEFAULT_WEIGHTS))
    if args.variant and len(variants) != len(args.variant):
        raise ConfigError("--variant: two variants share a label")
    return sweep(args.run, args.out, variants, args.max_px, args.with_teacher, args.data, args.student_steps,
                 args.baselines)


if __name__ == "__main__":
    from tocsr.app.script import run_script

    run_script(main)
