"""Versioned JSON artifacts, written atomically and read back with their kind and version checked.

Every file a stage writes is `{"schema_version", "kind", "environment", ...payload}`. Writes go to a
temporary file in the same folder, are fsynced, then renamed over the target, so a process killed
mid-write leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tocsr.core.errors import ArtifactError


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` via temp file + fsync + rename (atomic on POSIX filesystems)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_artifact(path: str | os.PathLike[str], kind: str, schema_version: int, payload: dict[str, Any],
                   environment: dict[str, Any] | None = None) -> Path:
    """Write one versioned JSON artifact atomically.

    Example:
        >>> write_artifact(tmp / "m.json", "tocsr.bench.measurement", 1, {"median_ms": 3.2})
    """
    doc = {"schema_version": schema_version, "kind": kind}
    if environment is not None:
        doc["environment"] = environment
    clash = set(doc) & set(payload)
    if clash:
        raise ValueError(f"payload keys {sorted(clash)} are reserved for the artifact header")
    doc.update(payload)
    return atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_artifact(path: str | os.PathLike[str], kind: str, schema_version: int,
                  rebuild: str = "re-run the stage that wrote it",
                  migrations: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Read an artifact written by `write_artifact`, refusing other kinds, versions and broken files.

    `rebuild` tells the user how to make a file of the current version (the command that writes it).
    `migrations` maps an older schema version to a function that returns the document as the current
    version (only where the old meaning is known exactly)."""
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{p}: file not found (expected a {kind} artifact)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{p}: not valid JSON ({err}); the file is truncated or corrupted, "
                            "delete it to recompute") from None
    if not isinstance(doc, dict):
        raise ArtifactError(f"{p}: expected a JSON object, found {type(doc).__name__}")
    if "kind" not in doc:
        raise ArtifactError(f"{p}: no kind (written by an earlier version of the suite; expected {kind!r}); {rebuild}")
    if doc.get("kind") != kind:
        raise ArtifactError(f"{p}: kind = {doc.get('kind')!r}: expected {kind!r}")
    if migrations and doc.get("schema_version") in migrations:
        doc = {**migrations[doc["schema_version"]](doc), "schema_version": schema_version}
    if doc.get("schema_version") != schema_version:
        raise ArtifactError(f"{p}: schema_version = {doc.get('schema_version')!r}, written by another version of "
                            f"the suite (this one reads {schema_version}); {rebuild}")
    return doc


R = TypeVar("R", bound="FolderRecord")


class FolderRecord:
    """Base of the typed records a stage leaves in its folder (one JSON file each): how they are saved and
    loaded, written once. A subclass is a frozen dataclass that sets FILE_NAME, KIND, SCHEMA_VERSION and
    REBUILD (the command that writes a current one; `{folder}` is filled in) and defines to_dict/from_dict.

    Loading refuses another kind, another schema version and a record with missing or malformed fields,
    each in one line that names the file and the command that rebuilds it.
    """

    FILE_NAME: ClassVar[str]
    KIND: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int]
    REBUILD: ClassVar[str] = "re-run the stage that wrote it"
    # older schema version -> the document as the current version (only where the old meaning is known exactly)
    MIGRATIONS: ClassVar[Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any]) -> R:
        raise NotImplementedError

    def save(self, folder: str | os.PathLike[str], environment: dict[str, Any]) -> Path:
        return write_artifact(Path(folder) / self.FILE_NAME, self.KIND, self.SCHEMA_VERSION, self.to_dict(),
                              environment=environment)

    @classmethod
    def load(cls: type[R], folder: str | os.PathLike[str]) -> R:
        root = Path(folder)
        rebuild = cls.REBUILD.format(folder=root)
        doc = read_artifact(root / cls.FILE_NAME, cls.KIND, cls.SCHEMA_VERSION, rebuild=rebuild,
                            migrations=cls.MIGRATIONS)
        try:
            return cls.from_dict(doc)
        except (KeyError, TypeError, ValueError) as err:
            raise ArtifactError(f"{root / cls.FILE_NAME}: not a complete {cls.KIND} record ({type(err).__name__}: "
                                f"{err}); {rebuild}") from err
