"""Fuzzed bad input: profiles, image files and CLI arguments (>= 1,000 generated cases in all).

Every case must end in a correct result, or one line naming the problem (and exit code 1 for the
CLI); never a traceback, a hang, or a half-written file.
"""

from __future__ import annotations

import io
import struct
import zlib

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.profile import DeviceProfile, parse_profile
from tests.conftest import CPU_PROFILE_YAML
from tocsr.app.cli import main
from tocsr.core.errors import TocsrError
from tocsr.core.imageio import ImageReadError, read_image

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
BASE = yaml.safe_load(CPU_PROFILE_YAML)

junk = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=20), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                          st.integers(), max_size=2))


def _paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


PATHS = list(_paths(BASE)) + [("budgets", "latency_ms"), ("timing", "percentile")]


@st.composite
def mutated_profiles(draw):
    data = yaml.safe_load(CPU_PROFILE_YAML)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            action = draw(st.sampled_from(["set", "delete", "extra"]))
            if action == "set":
                node[path[-1]] = draw(junk)
            elif action == "delete":
                node.pop(path[-1], None)
            else:
                node[draw(st.text(min_size=1, max_size=8))] = draw(junk)
    return yaml.safe_dump(data, allow_unicode=True)


@FAST
@given(text=mutated_profiles())
# Found by CI: a key made of newlines once leaked into the message and split it over lines.
@example(text=CPU_PROFILE_YAML + "? '\\n\\n  '\n: null\n")
def test_fuzzed_profiles_load_or_fail_in_one_line(text):
    try:
        profile = parse_profile(text, "fuzz.yaml")
    except TocsrError as err:
        assert "\n" not in str(err) and str(err).startswith("fuzz.yaml")
        return
    assert isinstance(profile, DeviceProfile)
    assert (profile.budgets.latency_ms or 0) > 0 or (profile.budgets.latency_vs_teacher or 0) > 0


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=2000))
def test_random_bytes_are_not_images(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("img") / "x.png"
    path.write_bytes(raw)
    try:
        rgb, _, _ = read_image(path)
    except ImageReadError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    assert rgb.ndim == 3 and rgb.shape[2] == 3


def _png_bytes(w=64, h=48, mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, (w, h), 128).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes():
    buf = io.BytesIO()
    Image.effect_noise((96, 64), 40).convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()


@settings(max_examples=200, deadline=None)
@given(cut=st.floats(0.0, 0.999), which=st.sampled_from(["png", "jpeg"]))
def test_truncated_files_are_refused_or_read_whole(tmp_path_factory, cut, which):
    full = _png_bytes() if which == "png" else _jpeg_bytes()
    path = tmp_path_factory.mktemp("trunc") / f"t.{which}"
    path.write_bytes(full[: int(len(full) * cut)])
    try:
        rgb, _, _ = read_image(path)
    except ImageReadError as err:
        assert "\n" not in str(err)
        return
    assert rgb.shape[:2] == ((48, 64) if which == "png" else (64, 96))


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@settings(max_examples=150, deadline=None)
@given(w=st.integers(1, 2**31 - 1), h=st.integers(1, 2**31 - 1))
def test_absurd_dimensions_are_refused_before_decoding(tmp_path_factory, w, h):
    path = tmp_path_factory.mktemp("dims") / "huge.png"
    path.write_bytes(_png_header_only(w, h))
    try:
        rgb, _, _ = read_image(path)
    except ImageReadError as err:
        assert "\n" not in str(err)
        if w * h > 100_000_000 or max(w, h) > 65_535:
            assert "refused" in str(err)
        return
    # what is read is an image of the header's size, within the limits
    assert rgb.shape == (h, w, 3) and w * h <= 100_000_000 and max(w, h) <= 65_535, (w, h, rgb.shape)


def test_a_decompression_bomb_is_refused_without_allocating(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("L", (20_000, 20_000), 0).save(path, optimize=True)       # 400 MP in a few hundred KB
    assert path.stat().st_size < 2_000_000
    with pytest.raises(ImageReadError, match="refused"):
        read_image(path)


@pytest.mark.parametrize("side", [4_000, 9_000])
def test_the_pixel_limit_refuses_from_the_header_before_any_decoding(tmp_path, side):
    # Below Pillow's own bomb threshold, so only the suite's check can refuse it; the file holds a header and
    # no pixel data, so an image that were decoded would fail with "cannot decode", not be "refused".
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(ImageReadError) as info:
        read_image(path, max_pixels=side * side - 1)
    assert f"{side}x{side} pixels is refused (limit {side * side - 1:,} pixels" in str(info.value)
    with pytest.raises(ImageReadError, match="cannot decode"):       # one pixel more allowed: it is decoded
        read_image(path, max_pixels=side * side)


COMMANDS = ["bench", "run", "teacher", "distill", "costs", "search", "sr", "upscale", "report", "nightly",
            "profiles", "workloads", "search-benchmark"]
flags = st.sampled_from(["--profile", "--model", "--out", "--preset", "--evaluations", "--method", "--scale", "--dtype",
                         "--steps", "--teacher", "--formulation", "-p", "-o", "--bogus", "--help-me", "--tile"])
values = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                           max_size=12), st.sampled_from(["-1", "0", "nan", "../../etc/passwd", "x" * 300, "", "1e9"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmd=st.sampled_from(COMMANDS), args=st.lists(st.one_of(flags, values), max_size=5))
# Found by CI: a 300-character run folder made the file system raise ENAMETOOLONG through pathlib.
@example(cmd="report", args=["x" * 300])
def test_fuzzed_cli_arguments_succeed_or_end_in_one_error_line_with_exit_1(cmd, args, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # nothing the fuzzer names can land in the repository
    argv = [cmd, *args]
    if "--help" in args or "-h" in args:
        return
    with pytest.raises(SystemExit) as code:
        main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code.value.code in (0, 1, None), (argv, code.value.code, err)
    if code.value.code == 1:
        assert err.strip().splitlines()[-1].startswith(("error: ", "skipped: ")), (argv, err)
        assert err.strip() and err.strip().count("\n") == 0, (argv, err)
