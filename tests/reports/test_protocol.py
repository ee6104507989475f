"""`tocsr eval`: benchmark folder layouts, whole-image scoring equal to pyiqa, intervals, external checkpoints."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from reports.intervals import bootstrap_mean, paired_difference
from reports.protocol import (
    EvalImage,
    EvalResult,
    baseline_method,
    evaluate_folder,
    find_images,
    interpolation,
    load_pair,
    lr_names,
    run_module_tiled,
)
from tocsr.core.errors import ConfigError
from tocsr.core.resize import matlab_imresize


def _photos(n: int = 5, w: int = 102, h: int = 78) -> list[np.ndarray]:
    """Crops of the embedded photographs, deliberately not multiples of 4 (modcrop is exercised)."""
    from tocsr.core.data import load_photos

    photos, _ = load_photos(None)
    return [p.rgb[:h, :w] for p in photos[:n]]


def _write(folder, arrays, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for a, n in zip(arrays, names, strict=True):
        Image.fromarray(a).save(folder / f"{n}.png")


def _bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    x = torch.from_numpy(np.ascontiguousarray(hr[:h, :w])).permute(2, 0, 1)[None].float() / 255
    return (matlab_imresize(x, 1 / scale)[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_lr_names_cover_the_benchmark_conventions():
    assert lr_names("baby", 4)[0] == "baby"                                  # Set5/Set14 LRbicx4 folders
    assert "0801x4" in lr_names("0801", 4) and "0801_x4" in lr_names("0801", 4)   # DIV2K, others
    assert "Canon_001_LR4" in lr_names("Canon_001_HR", 4)                    # RealSR


def test_a_div2k_layout_pairs_up_and_a_missing_lr_image_is_refused_naming_what_was_looked_for(tmp_path):
    hr = _photos(3)
    _write(tmp_path / "HR", hr, ["0801", "0802", "0803"])
    _write(tmp_path / "LR", [_bicubic_lr(a, 4) for a in hr], ["0801x4", "0802x4", "0803x4"])
    images = find_images(tmp_path / "HR", tmp_path / "LR", 4)
    assert [(i.name, i.lr_path.name) for i in images] == [("0801", "0801x4.png"), ("0802", "0802x4.png"),
                                                          ("0803", "0803x4.png")]
    (tmp_path / "LR" / "0802x4.png").unlink()
    with pytest.raises(ConfigError, match=r"no LR image for 1 of 3 HR images \(first: '0802'; looked for 0802, "
                                          r"0802x4, 0802_x4"):
        find_images(tmp_path / "HR", tmp_path / "LR", 4)


def test_an_lr_image_of_the_wrong_size_is_refused_with_both_sizes(tmp_path):
    hr = _photos(1)
    _write(tmp_path / "HR", hr, ["a"])
    _write(tmp_path / "LR", [_bicubic_lr(hr[0], 2)], ["a"])
    (image,) = find_images(tmp_path / "HR", tmp_path / "LR", 4)
    with pytest.raises(ConfigError, match=r"51x39 px, but HR a.png cropped to a multiple of 4 is 100x76: expected "
                                          r"25x19 \(is --scale right\?\)"):
        load_pair(image, 4, "bicubic", 0)


def test_lr_made_here_is_matlab_bicubic_of_the_modcropped_hr_and_realesrgan_is_seeded_per_image(tmp_path):
    hr = _photos(2)
    _write(tmp_path / "HR", hr, ["a", "b"])
    a, b = find_images(tmp_path / "HR", None, 4)
    hr_a, lr_a = load_pair(a, 4, "bicubic", 0)
    assert hr_a.shape == (76, 100, 3) and np.array_equal(lr_a, _bicubic_lr(hr[0], 4))
    one, two, other = (load_pair(a, 4, "realesrgan", 0)[1], load_pair(a, 4, "realesrgan", 0)[1],
                       load_pair(a, 4, "realesrgan", 1)[1])
    assert one.shape == (19, 25, 3) and np.array_equal(one, two) and not np.array_equal(one, other)
    assert not np.array_equal(load_pair(b, 4, "realesrgan", 0)[1][:19, :25], one)


def test_tiling_a_module_gives_the_untiled_result_when_its_receptive_field_fits_the_context():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(12, 48, 3, padding=1),
                              torch.nn.PixelShuffle(4), torch.nn.Sigmoid()).eval()
    lr = (np.random.default_rng(0).random((37, 50, 3)) * 255).astype(np.uint8)
    whole = run_module_tiled(net, lr, 4, tile=1000)
    tiled = run_module_tiled(net, lr, 4, tile=16, context=4)
    assert whole.shape == (148, 200, 3) and np.array_equal(whole, tiled)
    assert not np.array_equal(whole, run_module_tiled(net, lr, 4, tile=16, context=0))   # context matters


def test_psnr_y_and_ssim_y_of_eval_equal_pyiqa_on_five_whole_images(tmp_path):
    pyiqa = pytest.importorskip("pyiqa")
    _write(tmp_path / "HR", _photos(5), [f"im{i}" for i in range(5)])
    images = find_images(tmp_path / "HR", None, 4)
    methods = [interpolation("bicubic", 4), interpolation("lanczos", 4)]
    result = evaluate_folder(images, methods, 4, "bicubic")
    ref_psnr = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", crop_border=4, data_range=255,
                                   device="cpu")
    ref_ssim = pyiqa.create_metric("ssim", test_y_channel=True, color_space="ycbcr", crop_border=4, device="cpu")
    for m in methods:
        for i, image in enumerate(images):
            hr, lr = load_pair(image, 4, "bicubic", 0)
            sr = m.run(lr)
            t = [torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255 for a in (sr, hr)]
            assert abs(result.per_image[m.name]["psnr_y"][i] - ref_psnr(*t).item()) < 1e-3, (m.name, image.name)
            assert abs(result.per_image[m.name]["ssim_y"][i] - ref_ssim(*t).item()) < 1e-4, (m.name, image.name)
    assert len(set(result.per_image["bicubic"]["psnr_y"])) == 5       # five different images, not one repeated


def test_bootstrap_intervals_cover_the_mean_and_paired_differences_see_what_separate_intervals_cannot():
    rng = np.random.default_rng(0)
    base = rng.normal(28, 3, size=20)                      # image difficulty varies a lot...
    better = base + 0.1 + rng.normal(0, 0.02, size=20)     # ...a small, consistent gain
    a, b = bootstrap_mean(better), bootstrap_mean(base)
    assert a.low < a.mean < a.high and a.n == 20
    assert a.low < b.high                                  # the separate intervals overlap
    d = paired_difference(better, base)
    assert d.excludes_zero() and 0.08 < d.low < d.mean < d.high < 0.12
    assert bootstrap_mean([3.0]).text() == "3.000 [3.000, 3.000]"
    with pytest.raises(ValueError, match="same images"):
        paired_difference([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="1 of 2 values are not finite"):
        bootstrap_mean([1.0, float("nan")])


def test_the_result_round_trips_and_writes_one_csv_row_per_image_and_method(tmp_path):
    _write(tmp_path / "HR", _photos(3), ["a", "b", "c"])
    images = find_images(tmp_path / "HR", None, 4)
    result = evaluate_folder(images, [interpolation("bicubic", 4), interpolation("nearest", 4)], 4, "bicubic",
                             hr_dir=str(tmp_path / "HR"))
    result.save(tmp_path / "out", {"test": True})
    again = EvalResult.load(tmp_path / "out")
    assert again == result
    rows = list(csv.DictReader((tmp_path / "out" / "per_image.csv").open()))
    assert len(rows) == 6 and {r["method"] for r in rows} == {"bicubic", "nearest"}
    s = again.summary()
    assert s["methods"]["nearest"]["minus_bicubic"]["psnr_y"]["high"] < 0        # nearest loses, on every image
    assert s["best_baseline"] is None and again.describe()[1].count("minus") == 1   # no best-baseline column
    paired = again.against("bicubic")
    assert paired[0].startswith("minus bicubic, paired by image") and len(paired) == 1 + len(again.metrics())
    assert paired[1].startswith("  psnr_y (higher is better): nearest ")
    assert paired[1].endswith(again.paired("nearest", "bicubic", "psnr_y").text(3)) and "bicubic -" not in paired[1]
    with pytest.raises(ConfigError, match="--against 'lanczos': no method of that name"):
        again.against("lanczos")


def _result(per_image: dict[str, list[float]], kinds: dict[str, str]) -> EvalResult:
    n = len(next(iter(per_image.values())))
    return EvalResult(scale=4, lr_source="bicubic", seed=0, hr_dir="HR", lr_dir=None,
                      images=tuple(f"{i}.png" for i in range(n)),
                      methods=tuple({"name": k, "kind": kinds[k], "source": "test"} for k in per_image),
                      per_image={k: {"psnr_y": v, "ssim_y": [0.5] * n} for k, v in per_image.items()})


def test_eval_says_in_words_what_the_paired_differences_support_against_the_best_baseline_and_interpolation():
    rng = np.random.default_rng(1)
    base = list(rng.normal(26, 2, size=8))
    lanczos = [b + 0.05 for b in base]                              # the best interpolation, not bicubic
    srvgg = [b + 0.4 + e for b, e in zip(base, rng.normal(0, 0.05, 8), strict=True)]
    ours = [s + e for s, e in zip(srvgg, rng.normal(0, 0.3, 8), strict=True)]   # same mean as srvgg, noisy
    kinds = {"bicubic": "interpolation", "lanczos": "interpolation", "srvgg": "baseline", "tocsr:m": "tocsr"}
    result = _result({"bicubic": base, "lanczos": lanczos, "srvgg": srvgg, "tocsr:m": ours}, kinds)
    assert result.best_interpolation() == "lanczos" and result.best_baseline() == "srvgg"
    said = result.verdicts()
    assert len(said) == 2
    vs_srvgg, vs_lanczos = said
    d = result.paired("tocsr:m", "srvgg", "psnr_y")
    assert d.low < 0 < d.high
    assert vs_srvgg == ("no clear difference between tocsr:m and srvgg (the interval spans 0): tocsr:m minus srvgg "
                        f"{d.text(3)} dB")
    assert vs_lanczos.startswith("tocsr:m leads lanczos: tocsr:m minus lanczos ")
    lines = result.describe()
    at = lines.index("what these images support (PSNR-Y, paired by image; higher is better):")
    assert lines[at + 1:] == [f"  {x}" for x in said]

    worse = [b - 0.3 for b in lanczos]
    behind = _result({"bicubic": base, "lanczos": lanczos, "tocsr:m": worse}, kinds).verdicts()
    assert behind == [f"tocsr:m is behind lanczos: tocsr:m minus lanczos "
                      f"{paired_difference(worse, lanczos).text(3)} dB"]
    # no TOC-SR model: the best baseline against the floor; interpolations alone: nothing to say
    assert _result({"bicubic": base, "srvgg": srvgg}, kinds).verdicts()[0].startswith("srvgg leads bicubic")
    only = _result({"bicubic": base, "lanczos": lanczos}, kinds)
    assert only.verdicts() == [] and not any("support" in x for x in only.describe())


def test_tocsr_eval_against_prints_every_method_minus_the_one_named_paired_by_image(tmp_path, capsys):
    from tocsr.app.cli import main

    _write(tmp_path / "HR", _photos(3), ["a", "b", "c"])
    with pytest.raises(SystemExit) as code:
        main(["eval", "--hr", str(tmp_path / "HR"), "--baseline", "nearest", "--baseline", "lanczos", "--metrics", "",
              "--against", "nearest", "--out", str(tmp_path / "out")])
    assert code.value.code in (0, None), capsys.readouterr().err
    printed = capsys.readouterr().out
    result = EvalResult.load(tmp_path / "out")
    line = next(x for x in printed.splitlines() if x.startswith("  psnr_y"))
    assert "minus nearest, paired by image" in printed
    assert line == ("  psnr_y (higher is better): bicubic " + result.paired("bicubic", "nearest", "psnr_y").text(3)
                    + ", lanczos " + result.paired("lanczos", "nearest", "psnr_y").text(3))
    with pytest.raises(SystemExit) as code:
        main(["eval", "--hr", str(tmp_path / "HR"), "--metrics", "", "--against", "tocsr:x", "--out",
              str(tmp_path / "out2")])
    assert code.value.code not in (0, None) and "no method of that name" in capsys.readouterr().err


def test_baseline_specs_are_refused_in_one_line_when_wrong(tmp_path):
    with pytest.raises(ConfigError, match="not an interpolation"):
        baseline_method("espcn", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no baseline.json"):
        baseline_method(f"x={tmp_path / 'empty'}", 4)
    with pytest.raises(ConfigError, match="checkpoint not found"):
        baseline_method(f"x={tmp_path / 'none.pth'}", 4)
    with pytest.raises(ConfigError, match="method names must be unique"):
        evaluate_folder([EvalImage("a", tmp_path / "a.png", None)], [interpolation("bicubic", 4)] * 2, 4)


# ---------------------------------------------------------------- external checkpoints (official key layouts)
def _rrdbnet_x4plus_state(nf: int = 16, gc: int = 32, blocks: int = 1) -> dict[str, torch.Tensor]:
    """RealESRGAN_x4plus's key layout (BasicSR's RRDBNet), small, random weights."""
    g = torch.Generator().manual_seed(0)

    def conv(name, cout, cin):
        return {f"{name}.weight": torch.randn(cout, cin, 3, 3, generator=g) * 0.02, f"{name}.bias": torch.zeros(cout)}

    sd = conv("conv_first", nf, 3)
    for b in range(blocks):
        for r in (1, 2, 3):
            for c in range(1, 6):
                sd |= conv(f"body.{b}.rdb{r}.conv{c}", nf if c == 5 else gc, nf + (c - 1) * gc)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        sd |= conv(name, nf, nf)
    return sd | conv("conv_last", 3, nf)


def _external_states() -> dict[str, dict[str, torch.Tensor]]:
    from spandrel.architectures.Compact import Compact as SRVGGNetCompact
    from spandrel.architectures.SPAN import SPAN
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    return {
        "realesrgan-x4plus": _rrdbnet_x4plus_state(),
        "realesr-general-x4v3": SRVGGNetCompact(num_feat=16, num_conv=4, upscale=4).state_dict(),
        "swinir-m-x4": SwinIR(upscale=4, img_size=64, window_size=8, embed_dim=24, depths=[2], num_heads=[2],
                              mlp_ratio=2, upsampler="pixelshuffle", resi_connection="1conv").state_dict(),
        "span-x4": SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=4).state_dict(),
    }


def test_checkpoints_in_official_layouts_are_scored_by_tocsr_eval(tmp_path, capsys):
    pytest.importorskip("spandrel")
    from safetensors.torch import save_file

    from tocsr.app.cli import main

    hr = _photos(2, w=64, h=48)
    _write(tmp_path / "Set5" / "HR", hr, ["a", "b"])
    _write(tmp_path / "Set5" / "LRbicx4", [_bicubic_lr(a, 4) for a in hr], ["a", "b"])
    specs = []
    for i, (name, state) in enumerate(_external_states().items()):
        path = tmp_path / (f"{name}.pth" if i % 2 else f"{name}.safetensors")
        torch.save(state, path) if i % 2 else save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        specs += ["--baseline", f"{name}={path}"]
    with pytest.raises(SystemExit) as code:
        main(["eval", "--hr", str(tmp_path / "Set5" / "HR"), "--lr", str(tmp_path / "Set5" / "LRbicx4"),
              "--metrics", "", *specs, "--out", str(tmp_path / "out")])
    assert code.value.code in (0, None), capsys.readouterr().err
    result = EvalResult.load(tmp_path / "out")
    assert [m["name"] for m in result.methods] == ["bicubic", *_external_states()]
    assert all(m["kind"] == "external" for m in result.methods[1:]) and result.lr_source == "given"
    assert result.summary()["best_baseline"] in _external_states()
    printed = capsys.readouterr().out
    assert "minus bicubic" in printed and "swinir-m-x4" in printed
    with pytest.raises(SystemExit) as code:
        main(["report", str(tmp_path / "out")])
    assert code.value.code in (0, None), capsys.readouterr().err
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "PSNR-Y minus bicubic" in html and all(name in html for name in _external_states())
    assert html.count("<img alt='PSNR-Y minus") == 2          # vs bicubic and vs the best baseline


def test_a_metric_that_fails_on_an_image_becomes_unavailable_with_the_reason_never_a_number(tmp_path, monkeypatch):
    import reports.protocol as protocol

    calls = []

    def picky(sr01):
        calls.append(sr01.shape)
        if len(calls) > 1:
            raise RuntimeError("image smaller than the metric's patch\nsecond line")
        return torch.tensor(3.0)

    monkeypatch.setattr(protocol, "_extra_metrics", lambda names: ({"picky": picky}, {"lpips": "weights not cached"}))
    _write(tmp_path / "HR", _photos(2), ["a", "b"])
    result = evaluate_folder(find_images(tmp_path / "HR", None, 4), [interpolation("bicubic", 4)], 4,
                             extra_metrics=("picky", "lpips"))
    assert result.unavailable == {"lpips": "weights not cached",
                                  "picky": "failed on b (bicubic): image smaller than the metric's patch"}
    assert result.metrics() == ["psnr_y", "ssim_y"]


def test_a_log_trend_recovers_the_gain_per_doubling_and_where_it_reaches_the_target():
    # 0.1 dB per doubling of seconds, 0.3 dB at 800 s: +1.0 dB needs 7 more doublings, 800 x 2^7 = 102 400 s
    import numpy as np

    from reports.intervals import log_trend

    seconds = [100.0, 200.0, 400.0, 800.0]
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, size=16)
    scores = [[0.3 - 0.1 * (3 - i) + e for e in noise] for i in range(4)]   # each image keeps its offset
    t = log_trend(seconds, scores, target=1.0 + noise.mean())
    assert t.per_doubling.mean == pytest.approx(0.1)
    assert t.per_doubling.low == pytest.approx(0.1) and t.per_doubling.high == pytest.approx(0.1)  # paired images
    assert t.reach_s == pytest.approx(102_400, rel=1e-6) and t.fitted_at_last == pytest.approx(0.3 + noise.mean())
    assert t.to_dict()["reach"].startswith("extrapolated")
    flat = log_trend(seconds, [[0.2 - 0.01 * i] * 3 for i in range(4)], target=1.0)
    assert flat.reach_s is None and flat.reach_low_s is None                  # a falling curve never reaches it
    with pytest.raises(ValueError, match="increasing seconds"):
        log_trend([200.0, 100.0], [[0.0], [0.1]], target=1.0)
