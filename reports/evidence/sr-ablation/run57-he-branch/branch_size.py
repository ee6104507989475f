"""How large a trained pixel branch's correction is: the mean |weight| of its first and last convolutions, and the RMS
of its correction (in 8-bit levels) on the first 256 px of three test photographs, downscaled x4 by torch's
antialiased bicubic (not the evaluation protocol's MATLAB resize: the figure is a magnitude, not a score). The first
line is the branch the first folder's config starts from, untrained.

    python reports/evidence/sr-ablation/run57-he-branch/branch_size.py RUN/test/HR FOLDER...
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tocsr.core.models.parts import PixelBranch
from tocsr.core.sr.info import SRModelInfo
from tocsr.core.sr.parts import deployed_branch


def _branches(folders: list[Path]):
    """Each folder's trained branch, after the branch its config starts from (seeded as run_sr seeds it)."""
    for folder in folders:
        cfg = SRModelInfo.load(folder).config
        if folder == folders[0]:
            torch.manual_seed(cfg.seed)
            yield "untrained", PixelBranch(cfg.scale, cfg.pixel_branch_width, cfg.pixel_branch_convs,
                                           cfg.pixel_branch_init).eval()
        yield folder.name, deployed_branch(folder, cfg.pixel_branch_width).eval()


def main(hr_dir: Path, folders: list[Path]) -> None:
    photos = sorted(hr_dir.iterdir())[:3]
    for name, branch in _branches(folders):
        convs = [m for m in branch.modules() if isinstance(m, torch.nn.Conv2d)]
        rms = []
        for path in photos:
            hr = np.asarray(Image.open(path).convert("RGB"))[:256, :256]
            x = torch.from_numpy(hr.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
            lr = torch.nn.functional.interpolate(x, scale_factor=0.25, mode="bicubic", antialias=True)
            with torch.no_grad():
                rms.append(branch(lr).square().mean().sqrt().item() * 127.5)
        print(f"{name}: init {branch.config.init}, first conv |w| {convs[0].weight.abs().mean():.4f}, "
              f"last conv |w| {convs[-1].weight.abs().mean():.5f}, correction RMS "
              f"{', '.join(f'{r:.2f}' for r in rms)} levels ({', '.join(p.stem for p in photos)})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]])
