import pytest

from tocsr.core.artifacts import read_artifact, write_artifact
from tocsr.core.errors import ArtifactError


def test_round_trip(tmp_path):
    path = write_artifact(tmp_path / "a" / "x.json", "k", 2, {"v": [1, 2]}, environment={"host": "h"})
    assert read_artifact(path, "k", 2)["v"] == [1, 2]
    assert not list(path.parent.glob(".*tmp"))


@pytest.mark.parametrize("content,fragment", [
    ('{"schema_version": 2, "kind": "k", "v": [1,', "truncated or corrupted"),
    ('{"schema_version": 2, "kind": "other"}', "kind = 'other'"),
    ('{"schema_version": 1, "kind": "k"}', "schema_version = 1"),
    ("[1, 2]", "expected a JSON object"),
])
def test_broken_files_are_named_not_read(tmp_path, content, fragment):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(ArtifactError) as info:
        read_artifact(path, "k", 2)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_nan_is_refused_rather_than_written(tmp_path):
    with pytest.raises(ValueError):
        write_artifact(tmp_path / "x.json", "k", 1, {"v": float("nan")})
    assert not (tmp_path / "x.json").exists()


class _Payload:
    """Unpickling this runs code (touches a file): what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_pickle_checkpoint_carrying_code_is_refused_and_never_run(tmp_path):
    import torch

    from tocsr.core.baselines import load_external_checkpoint
    from tocsr.core.errors import ConfigError

    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": _Payload(marker)}, path)
    with pytest.raises(ConfigError, match="refused: the checkpoint contains pickled code") as err:
        load_external_checkpoint(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()
