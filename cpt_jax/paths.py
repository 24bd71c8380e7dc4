"""Run directories that may be local or on Google Cloud Storage (`gs://bucket/...`).

Everything cpt_jax reads or writes under a workdir goes through `etils.epath` (gcsfs serves gs:// when
TensorFlow is absent; Orbax and TensorStore already speak GCS). The operations that differ are the atomic
write (locally through a temporary file and `os.replace`, so a kill never leaves half a file; a GCS object
upload is atomic by itself and GCS has no cheap rename) and moving a directory (a copy on GCS).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from etils import epath


def path(p: str | os.PathLike) -> epath.Path:
  return epath.Path(p)


def is_remote(p: str | os.PathLike) -> bool:
  return "://" in os.fspath(p)


def read_json(p: str | os.PathLike) -> Any:
  """Parsed JSON of a local or gs:// file; ValueError (UnicodeDecodeError, JSONDecodeError) if it is not JSON."""
  return json.loads(epath.Path(p).read_bytes().decode("utf-8"))


def write_bytes_atomic(p: str | os.PathLike, data: bytes) -> None:
  p = epath.Path(p)
  if is_remote(p):
    p.write_bytes(data)
    return
  tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")  # unique: concurrent writers never collide
  tmp.write_bytes(data)
  os.replace(tmp, p)


def write_text_atomic(p: str | os.PathLike, text: str) -> None:
  write_bytes_atomic(p, text.encode("utf-8"))


def move_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """Moves a directory: locally one atomic rename; GCS has no rename, so every object is copied, then deleted.

  gcsfs directly (not epath, which would use TensorFlow's gfile when installed, and gfile renames no GCS
  directories)."""
  if not is_remote(src):
    os.rename(src, dst)
    return
  import fsspec  # pylint: disable=g-import-not-at-top  # gs:// only; gcsfs registers itself on import
  fsspec.filesystem("gs").mv(os.fspath(src), os.fspath(dst), recursive=True)
