"""One run per workdir: a lease naming the process that trains there, so that a second launch on a live
workdir is refused instead of writing the same checkpoints and metrics.jsonl at the same time.

The lease is `WORKDIR/.lease`, a JSON record (id, host, pid, start and renewal times, command) renewed on a
timer while the run lasts and removed when it ends, however it ends short of a kill. Locally an OS lock on
`WORKDIR/.lease.lock` (flock: held by an open file, dropped by the kernel when the process dies) decides who
holds the workdir and the record only names the holder. On gs:// the record is the lease: it is created,
renewed and removed with generation preconditions, so of two runs racing for it exactly one wins.

A lease is stale, and taken over with a warning, when its process is gone (its host is this one and its pid
no longer exists, or locally the lock is free) or when it is not renewed for `train.lease_timeout_seconds`:
a holder on another host is watched for that long, by this process's clock, before it is taken over, and
refused at once if it renews meanwhile. Multi-process runs: process 0 takes the lease, every process checks
that the record names the run process 0 belongs to.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any, Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from cpt_jax import paths

LEASE_FILE = ".lease"
LOCK_FILE = ".lease.lock"
_MAX_RENEW_S = 60.0  # a live holder renews at least this often, whatever the timeout
_BROADCAST_BYTES = 2048


class WorkdirBusy(RuntimeError):
  """Another live run holds the workdir, or took it over from this one; the message names it and what to do."""


def renew_seconds(timeout_s: float) -> float:
  return min(_MAX_RENEW_S, timeout_s / 10) if timeout_s > 0 else _MAX_RENEW_S


def _boot_id() -> str:
  """Changes at every boot: a record from this host name but another boot names a process that is gone (a
  recreated VM may get the old name)."""
  try:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
      return f.read().strip()
  except OSError:
    return ""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def describe(rec: dict[str, Any] | None) -> str:
  """'pid 123 on host h since 2026-11-30 03:20:11 UTC, renewed 4 s ago (python -m cpt_jax.train …)'."""
  if not rec:
    return "an unknown process (its lease record is unreadable)"
  since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(rec.get("started", 0)))
  age = time.time() - rec.get("renewed", 0)
  cmd = f" ({' '.join(str(rec['argv']).split())[:160]})" if rec.get("argv") else ""
  return f"pid {rec.get('pid')} on host {rec.get('host')} since {since}, renewed {age:.0f} s ago{cmd}"


def _parse(raw: bytes | None) -> dict[str, Any] | None:
  if raw is None:
    return None
  try:
    rec = json.loads(raw.decode("utf-8"))
    return rec if isinstance(rec, dict) else {}
  except ValueError:
    return {}  # torn or foreign: held by someone unknown


class _LocalStore:
  """The record beside an flock'ed file; writes are plain atomic replaces (the lock serializes the writers)."""

  def __init__(self, workdir: str):
    self._record = os.path.join(workdir, LEASE_FILE)
    self._lock_path = os.path.join(workdir, LOCK_FILE)
    self._fd = None

  def lock(self) -> bool | None:
    """True: locked; False: another process holds the lock; None: this filesystem has no locks."""
    self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return True
    except BlockingIOError:
      self.unlock()
      return False
    except OSError as e:
      if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
        logging.warning("%s: this filesystem has no file locks; the lease record alone guards the workdir",
                        self._lock_path)
        return None
      raise

  def unlock(self) -> None:
    if self._fd is not None:
      os.close(self._fd)  # closing the file drops the lock
      self._fd = None

  def read(self) -> tuple[dict[str, Any] | None, Any]:
    try:
      with open(self._record, "rb") as f:
        raw = f.read()
    except FileNotFoundError:
      return None, None
    return _parse(raw), raw

  def write(self, rec: dict[str, Any], token: Any) -> Any:
    del token
    raw = json.dumps(rec).encode()
    paths.write_bytes_atomic(self._record, raw)
    return raw

  def delete(self, token: Any) -> None:
    _, raw = self.read()
    if raw == token:  # only our own record
      with contextlib.suppress(FileNotFoundError):
        os.unlink(self._record)


class _GcsStore:
  """The record as a GCS object, written and deleted only if its generation is still the one last seen."""

  def __init__(self, workdir: str):
    import fsspec  # pylint: disable=g-import-not-at-top  # gs:// only; gcsfs registers itself on import

    self._fs = fsspec.filesystem("gs")
    self._path = f"{workdir.rstrip('/')}/{LEASE_FILE}"
    self._bucket, self._key = self._path.split("://", 1)[1].split("/", 1)

  def lock(self) -> None:
    return None

  def unlock(self) -> None:
    pass

  def read(self) -> tuple[dict[str, Any] | None, int]:
    def get():
      self._fs.invalidate_cache(self._path)
      try:
        gen = int(self._fs.info(self._path)["generation"])
        return self._fs.cat_file(self._path), gen
      except FileNotFoundError:
        return None, 0

    raw, gen = paths.retry(get, self._path, verb="read")
    return _parse(raw), gen

  def write(self, rec: dict[str, Any], token: int) -> int:
    """Writes `rec` if the object's generation is still `token` (0: absent); FileExistsError otherwise."""
    out = paths.retry(lambda: self._fs.call(
        "POST", f"{self._fs._location}/upload/storage/v1/b/{{}}/o", self._bucket,  # pylint: disable=protected-access
        uploadType="media", name=self._key, ifGenerationMatch=str(token), data=json.dumps(rec).encode(),
        headers={"Content-Type": "application/octet-stream"}, json_out=True), self._path)
    return int(out["generation"])

  def delete(self, token: int) -> None:
    with contextlib.suppress(FileNotFoundError, FileExistsError):  # gone, or no longer ours
      paths.retry(lambda: self._fs.call("DELETE", "b/{}/o/{}", self._bucket, self._key, ifGenerationMatch=str(token)),
                  self._path)


class Lease:
  """The lease of one run on `workdir`; `acquire` once, `check` at every checkpoint, `release` at the end."""

  def __init__(self, workdir: str, timeout_s: float):
    self.workdir, self.timeout_s = workdir, float(timeout_s)
    self._store = _GcsStore(workdir) if paths.is_remote(workdir) else _LocalStore(workdir)
    self.id = uuid.uuid4().hex
    self._rec = {"id": self.id, "host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid(),
                 "started": time.time(), "renewed": time.time(), "timeout_seconds": self.timeout_s,
                 "argv": " ".join(sys.argv)[:500]}
    self._token = None
    self._lost: str | None = None
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def _busy(self, rec, why: str) -> WorkdirBusy:
    pid, host = (rec or {}).get("pid", "PID"), (rec or {}).get("host", "its host")
    return WorkdirBusy(
        f"workdir {self.workdir} is in use by another run: {describe(rec)}; {why}. Wait for it to finish, or stop "
        f"it (kill {pid} on {host}: it checkpoints and exits 75) and rerun this command; or use another --workdir. "
        f"A lease not renewed for train.lease_timeout_seconds={self.timeout_s:g} is taken over")

  def _stale(self, rec: dict[str, Any] | None, locked: bool | None) -> str | None:
    """Why `rec` is free to take ('' for no holder), or None while its holder may be alive."""
    if rec is None:
      return ""
    if rec.get("host") == self._rec["host"] and isinstance(rec.get("pid"), int):
      if rec.get("boot") and self._rec["boot"] and rec["boot"] != self._rec["boot"]:
        return f"its host was restarted since (process {rec['pid']} is gone)"
      if locked:  # nothing on this host holds the lock: the holder is gone (the pid may have been reused)
        return f"its process {rec['pid']} is gone (the lock is free)"
      if not _pid_alive(rec["pid"]):
        return f"its process {rec['pid']} is gone"
      return None
    age = time.time() - float(rec.get("renewed", 0) or 0)
    if self.timeout_s > 0 and age > self.timeout_s:
      return f"not renewed for {age:.0f} s (train.lease_timeout_seconds={self.timeout_s:g})"
    if locked and not rec:
      return "its record is unreadable and the lock is free"
    return None

  def acquire(self) -> None:
    """Takes the lease, waiting (at most the timeout) only for a holder on another host that may be dead."""
    try:
      self._acquire()
    except BaseException:
      self._store.unlock()
      raise
    self._thread = threading.Thread(target=self._renew_loop, name="cpt_jax_lease", daemon=True)
    self._thread.start()

  def _acquire(self) -> None:
    locked = self._store.lock()
    if locked is False:
      rec, _ = self._store.read()
      raise self._busy(rec, "it holds the workdir's lock")
    watched, since = None, 0.0
    while True:
      rec, token = self._store.read()
      why = self._stale(rec, locked)
      if why is None:
        if rec is not None and rec.get("host") != self._rec["host"] and self.timeout_s > 0:
          if watched is None:
            watched, since = token, time.monotonic()
            logging.warning("workdir %s is held by %s; waiting up to %g s for it to be released or to go stale",
                            self.workdir, describe(rec), self.timeout_s)
          elif token != watched:
            raise self._busy(rec, "it renewed its lease while this run waited")
          if time.monotonic() - since < self.timeout_s:
            time.sleep(min(renew_seconds(self.timeout_s), 5.0))
            continue
          why = f"not renewed while this run watched it for {self.timeout_s:g} s"
        else:
          raise self._busy(rec, "it is alive")
      self._rec["renewed"] = time.time()
      try:
        self._token = self._store.write(self._rec, token)
      except FileExistsError:  # another run wrote the lease since it was read (or a retried write of ours landed)
        mine, token = self._store.read()
        if not mine or mine.get("id") != self.id:
          continue
        self._token = token
      if why:
        logging.warning("took over the lease of %s from %s: %s", self.workdir, describe(rec), why)
      return

  def _renew_loop(self) -> None:
    while not self._stop.wait(renew_seconds(self.timeout_s)):
      try:
        self.renew()
      except Exception as e:  # pylint: disable=broad-except  # a renewal that fails is tried again
        logging.warning("renewing the lease of %s failed (%s: %s); trying again", self.workdir, type(e).__name__, e)
      if self._lost:
        return

  def renew(self) -> None:
    rec = dict(self._rec, renewed=time.time())
    try:
      self._token = self._store.write(rec, self._token)
      self._rec = rec
    except FileExistsError:
      holder, _ = self._store.read()
      self._lost = describe(holder)
      logging.error("the lease of %s was taken over by %s", self.workdir, self._lost)

  def check(self) -> None:
    """Raises WorkdirBusy on every process if another run took the workdir over (before this one writes more)."""
    lost = self._lost or ""
    if jax.process_count() > 1:
      lost = _broadcast_text(lost)
    if lost:
      raise WorkdirBusy(
          f"another run took over workdir {self.workdir}: {lost}. It judged this run dead (lease not renewed for "
          f"train.lease_timeout_seconds={self.timeout_s:g}); this run stops without writing more. Let the other "
          "run finish, or stop it and rerun this command")

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=30)
    try:
      if self._token is not None and not self._lost:
        self._store.delete(self._token)
    except Exception as e:  # pylint: disable=broad-except  # the run's outcome matters more than the record
      logging.warning("could not remove the lease record of %s (%s); the next run takes it over", self.workdir, e)
    finally:
      self._store.unlock()


def _broadcast_text(text: str) -> str:
  """Process 0's `text` on every process."""
  raw = text.encode()[:_BROADCAST_BYTES].ljust(_BROADCAST_BYTES, b"\0")
  out = multihost_utils.broadcast_one_to_all(np.frombuffer(raw, np.uint8))
  return bytes(np.asarray(out, np.uint8)).rstrip(b"\0").decode(errors="replace")


def holder(workdir: str) -> dict[str, Any] | None:
  """The record of the live run holding `workdir`, or None. For status displays: it takes no lock (a run
  starting meanwhile must not find the workdir busy), so on this host it trusts the record's pid."""
  probe = Lease(workdir, 0.0)
  rec, _ = probe._store.read()  # pylint: disable=protected-access
  if not rec:
    return None
  probe.timeout_s = float(rec.get("timeout_seconds", 0) or 0)
  return rec if probe._stale(rec, None) is None else None  # pylint: disable=protected-access


@contextlib.contextmanager
def hold(workdir: str, timeout_s: float) -> Iterator[Lease]:
  """The workdir's lease for the duration of the block: process 0 takes it, every process checks it."""
  lease = Lease(workdir, timeout_s)
  error = None
  if jax.process_index() == 0:
    try:
      lease.acquire()
    except Exception as e:  # pylint: disable=broad-except  # the other processes are told, then it is raised
      if jax.process_count() == 1:
        raise
      error = e
  if jax.process_count() > 1:
    got = json.loads(_broadcast_text(json.dumps({"error": str(error)[:1500]} if error else {"id": lease.id})))
    if error is not None:
      raise error
    if "error" in got:
      raise WorkdirBusy(got["error"])
    if jax.process_index() != 0:
      rec, _ = lease._store.read()  # pylint: disable=protected-access
      if rec is not None and rec.get("id") != got["id"]:  # None: a workdir this host does not share
        raise WorkdirBusy(f"workdir {workdir}: process 0 took its lease, but this process finds it held by "
                          f"{describe(rec)}; is the workdir shared by all hosts?")
  try:
    yield lease
  finally:
    if jax.process_index() == 0:
      lease.release()
