"""The manifest of a saved retriever: format version, kind, params, paragraph count, file hashes.

Every file a retriever writes is listed with its sha256, and with its size and modification
time as written. A full check (`verify="hash"`: `korqa verify`, copies, `load_retriever`'s
default) hashes every file, so a truncated, corrupted or swapped file fails with a message
naming it rather than as a wrong answer later. Opening an index to answer (`verify="stat"`)
compares sizes and modification times instead and hashes only a file whose time changed:
hashing every file on every open cost gigabytes of reading per question at kowiki scale.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
FORMAT_NAME = "korqa-retriever"
FORMAT_VERSION = 1
# How much `read_manifest` checks of the listed files: that they exist ("none"), their size and
# modification time, hashing a file only when its time changed ("stat"), or every hash ("hash").
CHECKS = ("none", "stat", "hash")


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(
    directory: Path, kind: str, params: dict[str, Any], paragraph_count: int, files: list[str]
) -> dict[str, Any]:
    """Hash `files` (relative to `directory`) and write `manifest.json` beside them."""
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "params": params,
        "paragraph_count": paragraph_count,
        "files": {name: sha256_file(directory / name) for name in sorted(files)},
        # [size in bytes, mtime in ns] as written: what `verify="stat"` compares. Optional, so
        # manifests written before it still load (and are then hashed in full).
        "stats": {name: _stat(directory / name) for name in sorted(files)},
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (directory / MANIFEST_FILE).write_text(text, encoding="utf-8")
    return manifest


def _stat(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


def check_mode(verify: bool | str) -> str:
    """One of `CHECKS` for a `verify` argument: True is "hash", False "none"."""
    if isinstance(verify, bool):
        return "hash" if verify else "none"
    if verify not in CHECKS:
        raise ValueError(f"verify must be True, False or one of {', '.join(CHECKS)}, "
                         f"got {verify!r}")
    return verify


def read_manifest(directory: Path, kind: str | None = None,
                  verify: bool | str = True) -> dict[str, Any]:
    """Read and check `directory/manifest.json` and the files it lists, as far as `verify`
    says (`CHECKS`; True: every sha256, False: only that they exist).

    Raises FileNotFoundError when the manifest or a listed file is missing and ValueError, naming
    the file and field, when the format, version, kind, a size or a hash does not match.
    """
    mode = check_mode(verify)
    path = directory / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no retriever manifest (is {directory} an index?)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: manifest is not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: manifest must be a JSON object")
    if manifest.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: field 'format' is {manifest.get('format')!r}, "
                         f"expected {FORMAT_NAME!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: field 'format_version' is {manifest.get('format_version')!r}; "
                         f"this korqa reads version {FORMAT_VERSION}: rebuild the index")
    if kind is not None and manifest.get("kind") != kind:
        raise ValueError(f"{path}: field 'kind' is {manifest.get('kind')!r}, expected {kind!r}")
    for field, type_ in (("params", dict), ("paragraph_count", int), ("files", dict)):
        if not isinstance(manifest.get(field), type_):
            raise ValueError(f"{path}: field {field!r} is missing or not a {type_.__name__}")
    stats = manifest.get("stats") if isinstance(manifest.get("stats"), dict) else {}
    for name, expected in manifest["files"].items():
        file = directory / name
        if not file.exists():
            raise FileNotFoundError(f"{file}: listed in {path} but missing")
        if mode == "none":
            continue
        recorded = stats.get(name)
        if mode == "stat" and isinstance(recorded, list) and len(recorded) == 2:
            size, mtime_ns = _stat(file)
            if size != recorded[0]:
                raise ValueError(
                    f"{file}: {size} bytes, but {path} lists {recorded[0]} (the file is "
                    "truncated or was changed after indexing): rebuild the index")
            if mtime_ns == recorded[1]:
                continue  # unchanged since it was written: `korqa verify` still hashes it
        if sha256_file(file) != expected:
            raise ValueError(
                f"{file}: sha256 does not match {path} (the file is corrupted or was changed "
                "after indexing): rebuild the index"
            )
    return manifest


def check_count(directory: Path, manifest: dict[str, Any], field: str, actual: int) -> None:
    """Raise if what was loaded disagrees with the manifest's paragraph count."""
    expected = manifest["paragraph_count"]
    if actual != expected:
        raise ValueError(
            f"{directory / MANIFEST_FILE}: field 'paragraph_count' is {expected} but "
            f"{field} has {actual}: the index files do not belong together"
        )
