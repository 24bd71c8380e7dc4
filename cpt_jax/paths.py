"""Run directories that may be local or on Google Cloud Storage (`gs://bucket/...`).

Everything cpt_jax reads or writes under a workdir goes through `etils.epath` (gcsfs serves gs:// when
TensorFlow is absent; Orbax and TensorStore already speak GCS). The operations that differ are the atomic
write (locally through a temporary file and `os.replace`, so a kill never leaves half a file; a GCS object
upload is atomic by itself and GCS has no cheap rename) and moving a directory (a copy on GCS).

Writes to gs:// that fail transiently (timeouts, dropped connections, HTTP 408/429/5xx) are retried with
exponential backoff, a bounded number of times; what still fails is a `StorageError`, like a full local disk.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
import uuid
from typing import Any, Callable, TypeVar

from etils import epath

T = TypeVar("T")

RETRY_ATTEMPTS = 6  # one try and five retries ...
RETRY_FIRST_DELAY_S = 0.5  # ... after 0.5, 1, 2, 4, 8 s: a 15 s outage is ridden out
_TRANSIENT_CODES = frozenset({408, 429, 500, 502, 503, 504})
# Exception classes (by name, so that no HTTP client needs importing here) of timeouts and dropped connections:
# the builtins, requests' and aiohttp's, and fsspec's FSTimeoutError.
_TRANSIENT_NAMES = frozenset({"TimeoutError", "ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout",
                              "ProxyError", "ChunkedEncodingError", "ClientConnectionError", "ClientPayloadError",
                              "ServerDisconnectedError", "ServerTimeoutError", "FSTimeoutError",
                              "UnavailableError", "DeadlineExceededError"})  # the last two: TensorFlow's gfile
# Local errors of a full or over-quota disk: the run stops with StorageError's exit code, like a storage outage.
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class StorageError(OSError):
  """A write that failed for good (disk full or over quota, a storage service that kept failing); the message
  names the file, the cause and what to do. Nothing committed before it is lost."""

  def __init__(self, message: str, code: int = errno.EIO):
    super().__init__(code, message)

  def __str__(self) -> str:
    return self.strerror


def is_transient(e: BaseException) -> bool:
  """Whether retrying the same request may succeed: a timeout, a dropped connection, HTTP 408/429/5xx."""
  code = getattr(e, "code", None)
  if isinstance(code, str) and code.isdigit():
    code = int(code)
  return code in _TRANSIENT_CODES or any(c.__name__ in _TRANSIENT_NAMES for c in type(e).__mro__)


def retry(fn: Callable[[], T], what: str, verb: str = "write") -> T:
  """`fn()` (which does `verb` to `what`), retried on transient errors with exponential backoff; StorageError once
  the attempts are spent."""
  delay = RETRY_FIRST_DELAY_S
  for attempt in range(1, RETRY_ATTEMPTS + 1):
    try:
      return fn()
    except Exception as e:  # pylint: disable=broad-except  # only transient ones are retried
      if not is_transient(e):
        raise
      reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
      if attempt == RETRY_ATTEMPTS:
        raise StorageError(f"cannot {verb} {what}: {reason}, still after {RETRY_ATTEMPTS} attempts. The storage "
                           "service keeps failing; rerun the same command when it is back: the last committed "
                           "checkpoint is kept") from e
      logging.warning("cannot %s %s (%s); retry %d of %d in %.1f s", verb, what, reason, attempt, RETRY_ATTEMPTS - 1,
                      delay)
      time.sleep(delay)
      delay *= 2
  raise AssertionError("unreachable")


def path(p: str | os.PathLike) -> epath.Path:
  return epath.Path(p)


def is_remote(p: str | os.PathLike) -> bool:
  return "://" in os.fspath(p)


def read_json(p: str | os.PathLike) -> Any:
  """Parsed JSON of a local or gs:// file; ValueError (UnicodeDecodeError, JSONDecodeError) if it is not JSON."""
  return json.loads(epath.Path(p).read_bytes().decode("utf-8"))


def write_bytes_atomic(p: str | os.PathLike, data: bytes) -> None:
  """The whole file or nothing: a kill, a full disk or a failed upload never leaves part of it."""
  p = epath.Path(p)
  if is_remote(p):
    retry(lambda: p.write_bytes(data), os.fspath(p))
    return
  tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")  # unique: concurrent writers never collide
  try:
    tmp.write_bytes(data)
    os.replace(tmp, p)
  except OSError:
    tmp.unlink(missing_ok=True)  # e.g. half of it written before the disk filled up
    raise


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
