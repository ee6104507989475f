from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.workloads import WorkloadError, list_workloads, resolve_workload
from tocsr.core.errors import ConfigError

FACTORY = '''
import torch
def make(profile):
    side = profile.resolution.latent_px
    return torch.nn.Conv2d(4, 4, 3, padding=1), (torch.randn(profile.batch, 4, side, side),)

def no_args():
    return torch.nn.Linear(3, 3), {"input": torch.randn(2, 3)}

def broken(profile):
    raise ValueError("weights folder /data/w is missing")

def wrong():
    return 42
'''


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_models.py"
    path.write_text(FACTORY)
    return path


def test_builtins_resolve(cpu_profile):
    assert "unet-tiny" in list_workloads()
    w = resolve_workload("unet-tiny", cpu_profile)
    assert w.args[0].shape == (1, 16, 8, 8)


def test_file_factory_with_and_without_profile(cpu_profile, factory_file):
    w = resolve_workload(f"{factory_file}:make", cpu_profile)
    assert w.args[0].shape == (1, 4, 8, 8)
    w2 = resolve_workload(f"{factory_file}:no_args", cpu_profile)
    assert set(w2.kwargs) == {"input"}


def test_module_factory(cpu_profile):
    w = resolve_workload("tests.bench.factories:conv_factory", cpu_profile)
    assert w.module.__class__.__name__ == "Conv2d" and w.args[0].shape == (1, 16, 8, 8)


def test_factory_errors_carry_their_own_message(cpu_profile, factory_file):
    with pytest.raises(WorkloadError, match="weights folder /data/w is missing"):
        resolve_workload(f"{factory_file}:broken", cpu_profile)
    with pytest.raises(WorkloadError, match=r"expected \(module, example_inputs\)"):
        resolve_workload(f"{factory_file}:wrong", cpu_profile)
    with pytest.raises(WorkloadError, match="no callable named 'nothere'"):
        resolve_workload(f"{factory_file}:nothere", cpu_profile)


def test_diffusers_config_builds_with_random_weights(cpu_profile, tmp_path):
    from tocsr.core.models.unet import get_unet_preset

    cfg = {"_class_name": "UNet2DConditionModel", **get_unet_preset("tiny").config}
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps(cfg))
    w = resolve_workload(str(tmp_path / "unet"), cpu_profile)
    assert w.kwargs["encoder_hidden_states"].shape[-1] == cfg["cross_attention_dim"]


def test_unknown_reference_lists_builtins(cpu_profile):
    with pytest.raises(ConfigError, match="unet-tiny"):
        resolve_workload("resnet9000", cpu_profile)


def test_a_tocsr_model_folder_is_measured_as_the_deployed_one_step_call_with_its_own_weights(cpu_profile, tmp_path):
    """`tocsr bench -m <sr folder>`: the whole call `tocsr upscale` makes on one tile (LR in at the profile's input
    size, HR out), loaded as the pipeline loads it, trained weights and all."""
    from bench.counting import count_params
    from tests.tiny import tiny_sr_folder
    from tocsr.core.sr.pipeline import TOCSRPipeline

    folder = tiny_sr_folder(tmp_path)
    w = resolve_workload(str(folder), cpu_profile)
    side = cpu_profile.resolution.input_px
    assert w.args[0].shape == (1, 3, side, side) and w.args[0].min() < 0 <= w.args[0].max() <= 1
    assert "TOC-SR one-step x4" in w.description
    deployed = TOCSRPipeline.from_pretrained(folder).model.eval()
    with torch.inference_mode():
        out = w.module(*w.args)
        assert out.shape == (1, 3, 4 * side, 4 * side)
        assert torch.equal(out, deployed(*w.args))
    # what the call runs: the tiny autoencoder's own encoder and decoder, which the deployed parts would replace, are
    # not counted where a part stands in (none here: the folder deploys the autoencoder's)
    assert count_params(w.module)["params"] == deployed.params_in_call() > 0
