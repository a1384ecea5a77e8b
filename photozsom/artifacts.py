"""One convention for every saved model and table: arrays + versioned JSON, written atomically.

Every artifact photozsom writes (SOM, MDN, random forest, encoder, recalibrator, cell report,
flagger, :class:`~photozsom.model.PhotoZModel`) is a **directory** holding

- ``meta.json`` — ``{"format": "photozsom.<kind>", "version": N, ...}``: the settings, the
  feature names and anything small, readable by any tool;
- ``arrays.npz`` — the numerical state as plain numpy arrays (read with
  ``allow_pickle=False``; torch weights are stored as their ``state_dict`` arrays), or other
  plain files (Parquet) the kind documents.

Nothing is unpickled on load, so loading a file cannot run code. Every file is written to a
temporary name beside its target and renamed into place (:func:`atomic_path`,
:func:`atomic_dir`), so a process killed mid-write leaves the previous artifact or none, never
a half-written one that a later stage would read.

Examples
--------
>>> import numpy as np, tempfile, os
>>> d = os.path.join(tempfile.mkdtemp(), "thing")
>>> _ = save_artifact(d, "example", {"w": np.arange(3.0)}, {"n": 3})
>>> arrays, meta = load_artifact(d, "example")
>>> arrays["w"].tolist(), meta["n"], meta["version"]
([0.0, 1.0, 2.0], 3, 1)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ArtifactError",
    "arrays_to_state",
    "atomic_dir",
    "atomic_path",
    "load_artifact",
    "read_json",
    "save_artifact",
    "state_to_arrays",
    "write_json",
]

META = "meta.json"
ARRAYS = "arrays.npz"


class ArtifactError(ValueError):
    """A saved artifact is missing, of another kind, or of an unsupported version."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file keeps ``path``'s suffix (or ``suffix``) so that libraries choosing a
    format by extension (pandas, astropy, numpy) still do. On an exception the temporary
    file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.",
                               suffix=".part" + (suffix or "".join(path.suffixes[-2:])),
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.unlink()  # writers create it themselves (some refuse an existing file)
    try:
        yield tmp
        if not tmp.exists():
            raise ArtifactError(f"nothing was written to {path}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; swap it in for ``path`` on success.

    An existing ``path`` is replaced only after the new directory is complete; if the block
    raises, the old directory stays and the temporary one is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            old.rmdir()
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _recover(path: Path) -> None:
    """Put back the previous version of an artifact whose replacement was killed mid-swap.

    :func:`atomic_dir` renames the old directory aside (``.<name>.*.old``) and then the new
    one into place; a process killed between the two renames leaves only the old copy,
    which is complete, so it is restored.
    """
    olds = sorted(path.parent.glob(f".{path.name}.*.old"), key=lambda p: p.stat().st_mtime)
    if olds and not path.exists():
        os.replace(olds[-1], path)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Mapping[str, Any]) -> Path:
    """Write ``obj`` as indented JSON atomically (numpy scalars and arrays converted)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(obj), indent=1, sort_keys=False) + "\n")
    return path


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON file written by :func:`write_json` (clear error when missing or broken)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{path} is not valid JSON ({err}); was its writer interrupted?") from err


def save_artifact(
    directory: str | os.PathLike,
    kind: str,
    arrays: Mapping[str, np.ndarray] | None,
    meta: Mapping[str, Any],
    *,
    version: int = 1,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write one artifact directory: ``meta.json`` + ``arrays.npz`` (+ ``extra`` files).

    Parameters
    ----------
    directory : path
        The artifact's directory; replaced atomically if it exists.
    kind : str
        What it is (``"som"``, ``"mdn"``, ...); stored as ``format = "photozsom.<kind>"`` and
        checked by :func:`load_artifact`.
    arrays : mapping of str to ndarray, optional
        Numerical state. Object arrays are refused (they would need pickle to load).
    meta : mapping
        JSON-serialisable settings.
    version : int
        The kind's format version.
    extra : mapping of file name to callable, optional
        ``{"table.parquet": lambda path: df.to_parquet(path)}``: more files written inside
        the same atomic directory.
    """
    arrays = dict(arrays or {})
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; store strings in meta or as fixed-width")
        arrays[k] = a
    head = {"format": f"photozsom.{kind}", "version": int(version)}
    head.update(_jsonable(dict(meta)))
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        if arrays:
            np.savez_compressed(tmp / ARRAYS, **arrays)
        for name, writer in (extra or {}).items():
            writer(tmp / name)
        (tmp / META).write_text(json.dumps(head, indent=1) + "\n")
    return directory


def load_artifact(
    directory: str | os.PathLike, kind: str, *, versions: tuple[int, ...] = (1,)
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an artifact written by :func:`save_artifact`, checking its kind and version.

    Returns
    -------
    arrays : dict of str to ndarray
        Empty when the artifact has no ``arrays.npz``.
    meta : dict
        The JSON metadata, including ``format`` and ``version``.
    """
    directory = Path(directory)
    if not directory.exists():
        _recover(directory)
    if not directory.is_dir():
        hint = " (a file: artifacts are directories)" if directory.exists() else ""
        raise ArtifactError(f"no photozsom {kind} at {directory}{hint}")
    if not (directory / META).exists():
        raise ArtifactError(f"no photozsom {kind} at {directory} (no {META}); write one with "
                            f"its save(directory) method")
    meta = read_json(directory / META)
    fmt = meta.get("format")
    if fmt != f"photozsom.{kind}":
        raise ArtifactError(f"{directory} holds {fmt!r}, not 'photozsom.{kind}'")
    if meta.get("version") not in versions:
        raise ArtifactError(
            f"{directory}: photozsom.{kind} format version {meta.get('version')} is not "
            f"supported by this photozsom (reads {list(versions)}); re-save it with a matching version"
        )
    arrays: dict[str, np.ndarray] = {}
    if (directory / ARRAYS).exists():
        with np.load(directory / ARRAYS, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    return arrays, meta


def state_to_arrays(state: Mapping[str, Any], prefix: str = "state/") -> dict[str, np.ndarray]:
    """A torch ``state_dict`` as float/int numpy arrays keyed ``prefix + name``."""
    out = {}
    for k, v in state.items():
        t = v.detach().cpu() if hasattr(v, "detach") else v
        out[prefix + k] = t.numpy() if hasattr(t, "numpy") else np.asarray(t)
    return out


def arrays_to_state(arrays: Mapping[str, np.ndarray], prefix: str = "state/") -> dict[str, Any]:
    """Inverse of :func:`state_to_arrays`: torch tensors keyed by parameter name."""
    import torch

    return {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
            if k.startswith(prefix)}
