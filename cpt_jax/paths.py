"""Run directories that may be local or on Google Cloud Storage (`gs://bucket/...`).

Everything cpt_jax reads or writes under a workdir goes through `etils.epath` (gcsfs serves gs:// when
TensorFlow is absent; Orbax and TensorStore already speak GCS). The one operation that differs is the atomic
write: locally through a temporary file and `os.replace`, so a kill never leaves half a file; a GCS object
upload is atomic by itself and GCS has no cheap rename.
"""

from __future__ import annotations

import os
import uuid

from etils import epath


def path(p: str | os.PathLike) -> epath.Path:
  return epath.Path(p)


def is_remote(p: str | os.PathLike) -> bool:
  return "://" in os.fspath(p)


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
