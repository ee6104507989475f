from __future__ import annotations

import json

import numpy as np
import pytest

from bench.cores import cores_text
from reports.nightly import REFERENCE, detect_regressions, load_history, render_nightly, run_night
from tocsr.core.artifacts import write_artifact


def night(i, medians, status="complete", rng=None, spread=0.02):
    rng = rng or np.random.default_rng(i)
    rows = []
    for model, m in medians.items():
        samples = list(m * (1 + spread * rng.standard_normal(30)))
        rows.append({"profile": "cpu", "model": model, "status": "ok", "median_ms": float(np.median(samples)),
                     "rep_medians_ms": [float(np.median(samples))] * 3, "samples_ms": samples})
    return {"night": f"n{i}", "label": f"n{i}", "status": status, "rows": rows}


BASE = {REFERENCE: 2.0, "unet": 7.0, "espcn": 0.4, "toy": 0.5}


def jitter(scale=0.02, seed=0):
    rng = np.random.default_rng(seed)
    return {k: v * (1 + scale * rng.standard_normal()) for k, v in BASE.items()}


def test_noise_alone_flags_nothing():
    nights = [night(i, jitter(seed=i)) for i in range(6)]
    assert detect_regressions(nights) == []


def test_a_twenty_percent_step_in_one_model_is_flagged_alone():
    nights = [night(i, jitter(seed=i)) for i in range(4)]
    slow = jitter(seed=10)
    slow["espcn"] *= 1.2
    flagged = detect_regressions(nights + [night(9, slow)])
    assert [f["model"] for f in flagged] == ["espcn"] and flagged[0]["step"] > 0.1


def test_a_slower_machine_is_not_a_regression():
    nights = [night(i, jitter(seed=i)) for i in range(4)]
    machine_slow = {k: v * 1.15 for k, v in jitter(seed=7).items()}
    assert detect_regressions(nights + [night(7, machine_slow)]) == []


def _with_cores(n: dict, low: float) -> dict:
    for r in n["rows"]:
        r["effective_cores"] = {"min": low, "max": 2.0, "threads": 2, "probes": 3}
    return n


def test_a_flagged_step_says_whether_its_night_had_fewer_cores_than_the_earlier_ones():
    from reports.nightly import compare_nights, describe_change, describe_comparison

    slow = jitter(seed=10)
    slow["espcn"] *= 1.2
    earlier = [_with_cores(night(i, jitter(seed=i)), 1.95) for i in range(4)]
    busy = detect_regressions(earlier + [_with_cores(night(9, slow), 1.1)])
    assert [f["model"] for f in busy] == ["espcn"]                 # still flagged: a label, not a pardon
    said = describe_change({**busy[0], "kind": "latency"})
    assert "this night's timings had 1.1-2.0 of 2 cores against 1.9-2.0 of 2 cores before" in said
    assert said.endswith("time it again on an idle machine before acting on it")
    idle = detect_regressions(earlier + [_with_cores(night(9, slow), 1.93)])
    said = describe_change({**idle[0], "kind": "latency"})
    assert "fewer cores do not explain it" in said and "busy" not in said
    old = detect_regressions([night(i, jitter(seed=i)) for i in range(4)] + [night(9, slow)])   # nights before the probe
    assert "cores" not in describe_change({**old[0], "kind": "latency"})
    a, b = earlier[-1], _with_cores(night(9, slow), 1.1)
    lines = describe_comparison(a, b, compare_nights(a, b, earlier))
    espcn = next(x for x in lines if "/espcn:" in x)
    assert "BEYOND NOISE" in espcn and "this night's timings had 1.1-2.0 of 2 cores" in espcn
    assert not any("cores" in x for x in lines if "/espcn:" not in x)     # within noise: nothing to explain


def test_a_real_night_records_the_cores_each_round_had(tmp_path, cpu_profile_path):
    run_night([str(cpu_profile_path)], ("sr:espcn",), tmp_path / "h", reps=2, label="one")
    nights, _ = load_history(tmp_path / "h")
    cores = [r["effective_cores"] for r in nights[0]["rows"]]
    assert all(c == cores[0] for c in cores) and cores[0]["probes"] == 2 and cores[0]["threads"] == 2
    assert 0 < cores[0]["min"] <= cores[0]["max"]
    page, _ = render_nightly(tmp_path / "h", tmp_path / "out")
    assert f"the rounds' timings had {cores_text(cores[0])}" in page.read_text()


def test_the_noise_bar_rises_with_the_night_to_night_spread_and_a_step_within_it_is_not_flagged():
    from reports.nightly import noise_threshold

    assert noise_threshold([1.0, 1.0, 1.0]) == 0.10                       # steady nights: the 10% floor
    assert noise_threshold([1.0]) == 0.10                                 # too few to measure a spread
    wide = noise_threshold([1.0, 1.08, 0.93, 1.05, 0.96])
    assert wide > 0.2                                                     # 4 x a spread of about 5%
    # nights 8% apart: a 20% step in one model is within four of their spreads
    noisy = [night(i, {**jitter(seed=i), "espcn": BASE["espcn"] * f}) for i, f in enumerate((1.0, 1.08, 0.93, 1.05))]
    slow = jitter(seed=10)
    slow["espcn"] *= 1.2
    assert detect_regressions(noisy + [night(9, slow)]) == []


def test_a_step_no_higher_than_an_earlier_night_is_not_flagged():
    # one earlier night was already this slow: the latest is within what was seen, not a step
    earlier = [night(i, jitter(seed=i)) for i in range(4)]
    once = jitter(seed=20)
    once["espcn"] *= 1.25
    earlier.insert(1, night(20, once))
    slow = jitter(seed=10)
    slow["espcn"] *= 1.2
    assert detect_regressions(earlier + [night(9, slow)]) == []
    slower = jitter(seed=10)
    slower["espcn"] *= 1.45
    assert [f["model"] for f in detect_regressions(earlier + [night(9, slower)])] == ["espcn"]


def test_failed_nights_are_ignored_and_corrupt_files_named(tmp_path, caplog):
    for i in range(3):
        write_artifact(tmp_path / f"2026010{i}.json", "tocsr.nightly_night", 1, night(i, jitter(seed=i)))
    write_artifact(tmp_path / "20260104.json", "tocsr.nightly_night", 1, night(4, {}, status="failed"))
    (tmp_path / "20260105.json").write_text('{"schema_version": 1, "kind": "tocsr.nightly_')
    with caplog.at_level("WARNING"):
        nights, problems = load_history(tmp_path)
    assert len(nights) == 4 and len(problems) == 1 and "20260105.json" in problems[0]
    assert detect_regressions(nights) == []
    page = render_nightly(tmp_path, tmp_path / "out")[0].read_text()
    assert "unreadable history file" in page and "failed" in page


@pytest.mark.slow
def test_real_nights_flag_exactly_the_injected_slowdown(tmp_path, cpu_profile_path):
    # Nightly-grade timing (the 5 repeats of the unit-test profile once let a 10.6% noise step through).
    profile = tmp_path / "nightly-cpu.yaml"
    profile.write_text(cpu_profile_path.read_text().replace(
        "timing: {warmup_min_iters: 2, warmup_max_iters: 6, repeats: 5, percentile: 90, max_cv: 0.5}",
        "timing: {warmup_min_iters: 5, warmup_max_iters: 40, repeats: 40, percentile: 90, max_cv: 0.1}"))
    assert "repeats: 40" in profile.read_text()
    cpu_profile_path = profile
    models = ("toy-conv-attn", "sr:espcn", "sr:srvgg")
    for i in range(3):
        run_night([str(cpu_profile_path)], models, tmp_path / "h", label=f"noise-{i}")
    nights, _ = load_history(tmp_path / "h")
    assert detect_regressions(nights) == []
    run_night([str(cpu_profile_path)], models, tmp_path / "h", inject={"sr:srvgg": 1.2}, label="injected")
    nights, _ = load_history(tmp_path / "h")
    assert [f["model"] for f in detect_regressions(nights)] == ["sr:srvgg"]


def _history(tmp_path, n_nights=4, slow=None):
    """Nights 1..n written as history files; the last one with `slow` = {model: factor}."""
    for i in range(1, n_nights + 1):
        medians = jitter(seed=i)
        if i == n_nights:
            for model, factor in (slow or {}).items():
                medians[model] *= factor
        write_artifact(tmp_path / f"2026010{i}T000000-abc{i}.json", "tocsr.nightly_night", 1,
                       {**night(i, medians), "night": f"2026010{i}T000000"},
                       environment={"git": {"sha": f"c0ffee{i}0" * 4}})
    return tmp_path


def test_the_exit_code_says_clean_regression_or_error_and_regressions_json_carries_it(tmp_path):
    import json

    from reports.nightly import EXIT_CLEAN, EXIT_ERROR, EXIT_REGRESSION, exit_code

    clean = _history(tmp_path / "clean")
    _, flagged = render_nightly(clean, tmp_path / "out-clean")
    assert flagged == [] and json.loads((tmp_path / "out-clean" / "regressions.json").read_text())["exit_code"] == EXIT_CLEAN
    slow = _history(tmp_path / "slow", slow={"espcn": 1.25})
    _, flagged = render_nightly(slow, tmp_path / "out-slow")
    doc = json.loads((tmp_path / "out-slow" / "regressions.json").read_text())
    assert doc["exit_code"] == EXIT_REGRESSION == 3 and [f["model"] for f in doc["flagged"]] == ["espcn"]
    assert doc["kind"] == "tocsr.nightly_regressions" and doc["flagged"][0]["step"] > 0.2
    nights, _ = load_history(slow)
    assert exit_code({**nights[-1], "status": "partial"}, flagged) == EXIT_ERROR == 1    # errors win
    assert exit_code(None, []) == EXIT_ERROR


def test_compare_shows_the_slowed_model_beyond_noise_and_the_rest_within(tmp_path):
    from reports.nightly import compare_nights, find_night

    nights, _ = load_history(_history(tmp_path, slow={"espcn": 1.2}))
    a, b = find_night(nights, "n3"), find_night(nights, "c0ffee40")          # by label, by commit prefix
    cells = {c["model"]: c for c in compare_nights(a, b, nights)}
    assert set(cells) == {"unet", "espcn", "toy"}
    assert cells["espcn"]["beyond_noise"] and cells["espcn"]["change"] > 0.15 and cells["espcn"]["nights_in_noise"] == 3
    assert not cells["unet"]["beyond_noise"] and not cells["toy"]["beyond_noise"]
    assert find_night(nights, "20260102T000000-abc2")["label"] == "n2"        # by history file name


def test_nightly_compare_command_prints_the_table_and_names_an_unknown_night(tmp_path, capsys):
    from tocsr.app.cli import main

    history = _history(tmp_path, slow={"toy": 1.3})
    with pytest.raises(SystemExit) as done:
        main(["nightly", "compare", "n3", "n4", "--history", str(history)])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "cpu/toy: " in out and "BEYOND NOISE" in out
    assert sum("within noise" in line for line in out.splitlines()) == 2
    with pytest.raises(SystemExit) as done:
        main(["nightly", "compare", "n3", "nope", "--history", str(history)])
    assert done.value.code == 1 and "no night 'nope' in the history" in capsys.readouterr().err


def test_a_real_night_records_p90_peak_memory_and_energy_or_why_not(tmp_path, cpu_profile_path):
    path = run_night([str(cpu_profile_path)], ("sr:espcn",), tmp_path / "h", reps=2, label="one")
    nights, problems = load_history(tmp_path / "h")
    assert problems == [] and nights[0]["file"] == path.stem
    row = next(r for r in nights[0]["rows"] if r["model"] == "sr:espcn")
    assert row["p90_ms"] >= row["median_ms"] > 0 and len(row["rep_medians_ms"]) == 2
    assert row["peak_mib"] > 0 and row["memory_method"]
    # these virtual machines have no readable RAPL counter: no figure, and the reason instead of one
    assert (row["energy_mj"] is None and row["energy_note"].startswith("not measured")) or row["energy_mj"] > 0


def test_the_page_lists_every_cell_of_the_latest_night_and_compare_shows_memory(tmp_path):
    from reports.nightly import compare_nights, describe_comparison, find_night

    history = _history(tmp_path / "h")
    latest = sorted(history.glob("*.json"))[-1]
    doc = json.loads(latest.read_text())
    for row in doc["rows"]:
        row.update({"p90_ms": row["median_ms"] * 1.1, "peak_mib": 12.5, "energy_mj": None,
                    "energy_note": "not measured: no counter here"})
    doc["rows"][1]["quality"] = {"metric": "psnr_y", "degradation": "bicubic", "images": ["a", "b"],
                                 "per_image": [30.0, 32.0], "mean": 31.0}
    latest.write_text(json.dumps(doc))
    page = render_nightly(history, tmp_path / "out")[0].read_text()
    assert "Latest night: n4" in page and "energy not measured: no counter here" in page and "12.5" in page
    assert "31.000 ± 0.707 (2 images)" in page and page.count("not tracked") == len(doc["rows"]) - 1
    nights, _ = load_history(history)
    lines = describe_comparison(nights[2], nights[3], compare_nights(find_night(nights, "n3"), nights[3], nights))
    assert not any("peak memory" in line for line in lines)          # night 3 has no memory reading
    doc3 = json.loads(sorted(history.glob("*.json"))[2].read_text())
    for row in doc3["rows"]:
        row["peak_mib"] = 10.0
    sorted(history.glob("*.json"))[2].write_text(json.dumps(doc3))
    nights, _ = load_history(history)
    lines = describe_comparison(nights[2], nights[3], compare_nights(nights[2], nights[3], nights))
    assert sum("peak memory 10.0 -> 12.5 MiB" in line for line in lines) == 3


def test_a_peak_memory_step_above_every_earlier_night_is_flagged_and_small_wobbles_are_not(tmp_path):
    from reports.nightly import EXIT_REGRESSION, describe_flag, detect_memory_regressions, exit_code

    history = _history(tmp_path / "h")
    files = sorted(history.glob("*.json"))
    base = {"unet": 40.0, "espcn": 0.4, "toy": 3.0, REFERENCE: 0.5}
    for i, f in enumerate(files):
        doc = json.loads(f.read_text())
        for row in doc["rows"]:
            row["peak_mib"] = base[row["model"]] * (1 + 0.02 * (i % 2))      # a 2% wobble between nights
            row["memory_method"] = "torch_cuda_allocated_growth_plus_weights"
            if i == len(files) - 1:
                row["peak_mib"] *= {"unet": 1.3, "espcn": 2.0, "toy": 1.05}.get(row["model"], 1.0)
        f.write_text(json.dumps(doc))
    nights, _ = load_history(history)
    flags = detect_memory_regressions(nights)
    # unet +30% (+12 MiB) is a step; espcn doubles but by 0.4 MiB; toy +5% is within the bar
    assert [(f["model"], f["kind"]) for f in flags] == [("unet", "memory")]
    assert describe_flag(flags[0]).startswith("cpu/unet: memory, peak memory 40.8 -> 53.0 MiB (+30.0%")
    page_flags = render_nightly(history, tmp_path / "out")[1]
    assert exit_code(nights[-1], page_flags) == EXIT_REGRESSION and "peak memory 40.8 -&gt; 53.0 MiB" in (
        tmp_path / "out" / "index.html").read_text()
    assert detect_memory_regressions(nights[:-1]) == []
    # torch's CPU allocator peak is judged like the GPU's; the same numbers read as CPU resident-set growth (the
    # fallback) are recorded, never judged (they vary 2x between nights)
    for method, judged in (("torch_cpu_allocated_growth_plus_weights", True), ("linux_vmhwm_growth_plus_weights", False)):
        for n in nights:
            for row in n["rows"]:
                row["memory_method"] = method
        assert bool(detect_memory_regressions(nights)) is judged, method


def _scored_night(i: int, bicubic: list[float], realesrgan: list[float] | None) -> dict:
    """A night whose tracked model was scored on three photographs under each degradation given."""
    doc = night(i, jitter(seed=i))
    qualities = {deg: {"metric": "psnr_y", "degradation": deg, "images": ["a", "b", "c"], "per_image": scores,
                       "mean": float(np.mean(scores))}
                 for deg, scores in (("bicubic", bicubic), ("realesrgan", realesrgan)) if scores is not None}
    doc["rows"][1]["qualities"] = qualities
    return doc


def test_a_quality_drop_under_one_degradation_is_flagged_for_that_degradation_alone(tmp_path):
    from reports.nightly import (
        compare_nights,
        describe_comparison,
        describe_flag,
        detect_quality_regressions,
        quality_of,
    )

    clean, real = [30.0, 31.0, 32.0], [24.0, 25.0, 26.0]
    nights = [_scored_night(i, clean, real) for i in range(3)]
    # the Real-ESRGAN inputs lose 0.5 dB on every photograph; the clean ones do not move
    nights.append(_scored_night(3, clean, [s - 0.5 for s in real]))
    flags = detect_quality_regressions(nights)
    assert [(f["model"], f["degradation"]) for f in flags] == [("unet", "realesrgan")]
    assert describe_flag(flags[0]).startswith("cpu/unet: quality, PSNR-Y (realesrgan degradation) -0.500 dB")
    cells = {c["model"]: c for c in compare_nights(nights[2], nights[3], nights)}
    assert cells["unet"]["quality"]["bicubic"]["drop"] is False and cells["unet"]["quality"]["realesrgan"]["drop"]
    line = next(ln for ln in describe_comparison(nights[2], nights[3], list(cells.values())) if "/unet:" in ln)
    assert "PSNR-Y (bicubic) +0.000 dB" in line and "PSNR-Y (realesrgan) -0.500 dB" in line
    # a night from before both were scored (one "quality" entry, bicubic) still compares on what it has
    old = night(2, jitter(seed=2))
    old["rows"][1]["quality"] = nights[2]["rows"][1]["qualities"]["bicubic"]
    assert set(quality_of(old, "cpu", "unet")) == {"bicubic"}
    assert detect_quality_regressions([old, nights[3]]) == []          # realesrgan: nothing to compare with
    # and between it and tonight the drop is still found against the last night that scored that degradation
    assert len(detect_quality_regressions([*nights[:2], old, nights[3]])) == 1
    for i, n in enumerate(nights):
        write_artifact(tmp_path / "h" / f"2026010{i}.json", "tocsr.nightly_night", 1, n)
    page = render_nightly(tmp_path / "h", tmp_path / "out")[0].read_text()
    assert "realesrgan: 24.500 ± 0.471 (3 images)" in page and "bicubic: 31.000 ± 0.471 (3 images)" in page
