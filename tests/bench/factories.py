"""A `package.module:factory` target for the workload tests."""

import torch


def conv_factory(profile):
    side = profile.resolution.latent_px
    return torch.nn.Conv2d(16, 16, 3, padding=1), (torch.randn(profile.batch, 16, side, side),)
