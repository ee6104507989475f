"""A parts folder holding a run's SR-trained parts: what `tocsr.app.sr_curve` started from before it took the parts
stage's (the fiftieth session's caveat), so that the two starts can be compared on the same run.

    python reports/evidence/sr-curve/run51-parts-start/trained_parts_folder.py --run runs/quick --out /tmp/trained-parts

Copies `<run>/parts/` (its record: scale, training seconds) and puts the run's first SR model's `lr-encoder/` and
`tiny-decoder/` in place of the parts stage's. A blind model only: a routed one keeps a copy per student.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

PARTS = ("lr-encoder", "tiny-decoder")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    models = sorted(p.parent for p in (args.run / "sr").glob("*/sr.json"))
    if not models:
        print(f"error: {args.run}/sr has no SR model; run the main job into {args.run} first", file=sys.stderr)
        return 2
    model = models[0]
    shutil.copytree(args.run / "parts", args.out)
    replaced = []
    for part in PARTS:
        if (model / part / "config.json").is_file():
            shutil.rmtree(args.out / part)
            shutil.copytree(model / part, args.out / part)
            replaced.append(part)
        elif (model / part).is_dir():
            print(f"error: {model / part} holds one copy per student (a routed model); this takes a blind one",
                  file=sys.stderr)
            return 2
    print(f"{args.out}: the parts of {args.run / 'parts'} with {', '.join(replaced) or 'none'} from {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
