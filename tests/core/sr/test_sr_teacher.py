"""The multi-step SR teacher's parts: its preconditioning, the averaged chains, per-degradation routing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler

from tocsr.core.errors import ConfigError
from tocsr.core.sr.run import MultiStepSR
from tocsr.core.sr.train import SRDenoiser, load_sr_teachers, sample_sr_teacher, sr_scheduler

C = 4


def _scheduler_config() -> dict:
    teacher = SimpleNamespace(scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                      beta_end=0.012))
    return dict(sr_scheduler(teacher).config)


class ZeroHead(torch.nn.Module):
    """A UNet stand-in whose output layer is still at zero (as the SR teacher's is before training)."""

    def __init__(self, channels: int = C):
        super().__init__()
        self.config = SimpleNamespace(out_channels=channels)
        self.calls = 0

    def forward(self, x, t, encoder_hidden_states=None, return_dict=False):
        self.calls += 1
        return (torch.zeros(x.shape[0], self.config.out_channels, *x.shape[2:]),)


def _denoiser(residual_std: torch.Tensor) -> SRDenoiser:
    abar = DDPMScheduler.from_config(_scheduler_config()).alphas_cumprod
    condition = SimpleNamespace(null=lambda b: torch.zeros(b, 1, 8))
    return SRDenoiser(ZeroHead(len(residual_std)), condition, abar, residual_std)


def test_untrained_sr_teacher_is_the_linear_least_squares_estimate():
    """HR = LR + a residual of per-channel std s; state = sqrt(abar) HR + sqrt(1 - abar) noise. With its head at
    zero the preconditioned teacher returns the Wiener estimate: better than the LR latent and than the
    rescaled state at every noise level, and the known closed-form error."""
    g = torch.Generator().manual_seed(0)
    std = torch.tensor([0.2, 0.5, 1.0, 2.0])
    model = _denoiser(std)
    z_lr = torch.randn(256, C, 8, 8, generator=g)
    z_hr = z_lr + std[None, :, None, None] * torch.randn(z_lr.shape, generator=g)
    for t in (2, 50, 250, 900):
        abar = model.alphas_cumprod[t]
        zt = abar.sqrt() * z_hr + (1 - abar).sqrt() * torch.randn(z_lr.shape, generator=g)
        est = model(zt, torch.full((len(zt),), t), z_lr)
        err = (est - z_hr).square().mean(dim=(0, 2, 3))
        sigma2 = (1 - abar) / abar
        wiener = std**2 * sigma2 / (std**2 + sigma2)
        torch.testing.assert_close(err, wiener, rtol=0.05, atol=0)
        assert bool((err < (z_lr - z_hr).square().mean(dim=(0, 2, 3))).all())
        assert bool((err < (zt / abar.sqrt() - z_hr).square().mean(dim=(0, 2, 3))).all())


def test_sr_teacher_refuses_a_residual_std_that_does_not_fit():
    with pytest.raises(ConfigError, match="one positive std per latent channel"):
        _denoiser(torch.tensor([1.0, 0.0, 1.0, 1.0]))
    abar = DDPMScheduler.from_config(_scheduler_config()).alphas_cumprod
    with pytest.raises(ConfigError, match=r"\(4\)"):
        SRDenoiser(ZeroHead(4), None, abar, torch.ones(3))


def test_mean_of_chains_removes_a_chain_specific_error_and_keeps_an_exact_answer():
    """A teacher whose answer carries part of its chain's own start noise (a sampler): the mean of 16 chains
    lands much closer to the truth than one chain; an oracle stays exact however many chains run."""
    config = _scheduler_config()
    g = torch.Generator().manual_seed(1)
    z_hr = torch.randn(2, C, 8, 8, generator=g)
    z_lr = z_hr + 0.3 * torch.randn(z_hr.shape, generator=g)
    abar = DDPMScheduler.from_config(config).alphas_cumprod
    noise = torch.Generator().manual_seed(2)

    def sampler(zt, t, lr):
        truth = z_hr.repeat(len(zt) // len(z_hr), 1, 1, 1)
        return truth + 0.5 * torch.randn(truth.shape, generator=noise)     # each row (chain) errs its own way

    one = sample_sr_teacher(sampler, abar, z_lr, steps=5, t_start=250, seed=0)
    many = sample_sr_teacher(sampler, abar, z_lr, steps=5, t_start=250, seed=0, chains=16)
    err_one, err_many = (one - z_hr).square().mean(), (many - z_hr).square().mean()
    assert one.shape == many.shape == z_lr.shape
    assert err_many < err_one / 8          # independent errors: 16x smaller on average

    calls = []

    def oracle(zt, t, lr):
        calls.append(len(zt))
        return z_hr.repeat(len(zt) // len(z_hr), 1, 1, 1)

    torch.testing.assert_close(sample_sr_teacher(oracle, abar, z_lr, steps=3, t_start=250, seed=0, chains=4), z_hr)
    assert calls == [8, 8, 8]          # the chains run as one batch: 3 calls, not 12
    with pytest.raises(ConfigError, match="at least one chain"):
        sample_sr_teacher(oracle, abar, z_lr, steps=3, t_start=250, seed=0, chains=0)


def test_multi_step_sr_runs_the_teacher_of_the_inputs_degradation():
    ae = SimpleNamespace()
    teachers = {"bicubic": _denoiser(torch.ones(C)), "realesrgan": _denoiser(torch.ones(C))}
    multi = MultiStepSR(ae, teachers, _scheduler_config(), 4, steps=3, t_start=250, chains=2)
    assert multi.takes_degradation
    assert multi._name(None) == "realesrgan" and multi._name("bicubic") == "bicubic"
    single = multi.for_degradation("bicubic")
    assert list(single.sr_teachers) == ["bicubic"] and single.chains == 2 and single.steps == 3
    assert sum(p.numel() for p in single.buffers()) * 2 == sum(p.numel() for p in multi.buffers())
    with pytest.raises(ConfigError, match="has teachers for bicubic, realesrgan"):
        multi.for_degradation("jpeg")


def test_loading_a_folder_without_per_degradation_teachers_says_to_rerun(tmp_path):
    (tmp_path / "sr_scheduler").mkdir()
    (tmp_path / "sr_teacher").mkdir()
    (tmp_path / "sr_teacher" / "config.json").write_text("{}")     # the older, single-teacher layout
    with pytest.raises(ConfigError, match="rerun `tocsr sr`"):
        load_sr_teachers(tmp_path, condition=None)


def test_chain_starts_exactly_at_t_start_and_takes_the_asked_calls():
    """The teacher trains on the LR latent noised to t_start; its chain must start there (DDIM's own spacing
    started at 240 for 20 calls from 250)."""
    from tocsr.core.sr.train import chain_timesteps

    for steps, t_start in ((20, 250), (50, 250), (3, 100), (250, 250)):
        ts = chain_timesteps(steps, t_start)
        assert ts[0] == t_start and len(ts) == steps and ts[-1] > 0
        assert all(a > b for a, b in zip(ts, ts[1:], strict=False))
    with pytest.raises(ConfigError, match="takes 1 to 250 calls"):
        chain_timesteps(251, 250)
