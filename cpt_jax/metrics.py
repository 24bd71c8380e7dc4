"""Metric writers (JSONL + TensorBoard), throughput and MFU.

`WORKDIR/metrics.jsonl` is the contract other tools read: one JSON object per line with `step`,
`tokens` and slash-named metrics (`train/loss`, `eval/base/loss`, …).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from cpt_jax import model as model_lib, paths

# Dense bf16 peak FLOP/s per chip, from vendor data sheets.
DEVICE_PEAK_FLOPS = {
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v6 lite": 918e12,
    "TPU v6e": 918e12, "H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12,
}


def device_peak_flops(device: jax.Device | None = None) -> float | None:
  """Per-device peak from the table, None on CPU (measure it instead) or an unknown accelerator."""
  device = device or jax.devices()[0]
  kind = getattr(device, "device_kind", "")
  for name, peak in DEVICE_PEAK_FLOPS.items():
    if name.lower() in kind.lower():
      return peak
  return None


def measure_matmul_peak(n: int = 1024, repeats: int = 5, dtype=jnp.float32) -> float:
  """FLOP/s of a jitted n×n matmul on one device, median of `repeats`: the CPU's practical peak."""
  x = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    f(x).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / float(np.median(times))


def peak_flops(dtype=jnp.float32) -> tuple[float, str]:
  """Peak of all devices together, and where the number came from."""
  per_device = device_peak_flops()
  if per_device is not None:
    return per_device * jax.device_count(), f"table:{jax.devices()[0].device_kind}"
  # fake CPU devices share the same cores: the host's peak is the whole machine's, counted once
  return measure_matmul_peak(dtype=dtype), "measured-matmul"


def flops_per_step(model_cfg: model_lib.ModelConfig, seq_len: int, rows: int, teacher_rows: int = 0) -> float:
  """What one train step computes, MFU's numerator; the one place the accounting lives.

  Each of the `rows`·T trained tokens costs `model.flops_per_token` (6·(non-embedding params + V·D) +
  12·layers·T·D: forward and backward, attention without the causal discount); each of the
  `teacher_rows`·T replay tokens the frozen teacher reads in the same step costs its forward, a third of
  that. Recomputation (remat, the fused LM head's backward) is not counted: MFU measures the model's work,
  not the implementation's.
  """
  per_token = model_lib.flops_per_token(model_cfg, seq_len)
  return seq_len * (rows * per_token + teacher_rows * per_token / 3)


def to_python(tree: Mapping[str, Any]) -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    v = np.asarray(v)
    out[k] = v.item() if v.ndim == 0 else v.tolist()
  return out


class MetricWriter:
  """metrics.jsonl (+ TensorBoard) on process 0; `truncate_after(step)` drops lines a resumed run will write
  again.

  Locally each line is appended whole, by one write to a file opened for appending; a write that fails (a full
  disk) is cut back off, so no partial line survives it (and a resumed run drops a line torn by a crash). A GCS
  object cannot be appended to, so with a gs:// workdir the
  lines are kept in memory and the whole object is rewritten by `flush()` (the loop calls it at every
  checkpoint, so a preempted run loses no line its checkpoint covers) and at least every `upload_seconds`.
  TensorBoard events then go to a local directory (logged), since tensorboardX cannot write to GCS alone.
  """

  def __init__(self, workdir: str, tensorboard: bool = True, upload_seconds: float = 60.0):
    self.active = jax.process_index() == 0
    self.path = paths.path(workdir) / "metrics.jsonl"
    self._remote = paths.is_remote(workdir)
    self._upload_seconds, self._uploaded_at = upload_seconds, time.time()
    self._lines: list[str] = []
    self._tb, self._tb_dir = None, None
    if self.active and tensorboard:
      self._tb_dir = os.path.join(workdir, "tensorboard")
      if self._remote:
        self._tb_dir = os.path.join(tempfile.gettempdir(), "cpt_jax_tensorboard", workdir.split("://", 1)[1])
        logging.info("TensorBoard events of %s are written locally to %s", workdir, self._tb_dir)
    self._fd = None
    if self.active and self._remote:
      self._lines = self.path.read_text().splitlines(keepends=True) if self.path.exists() else []
    elif self.active:
      self._open()

  def _open_tensorboard(self, purge_step: int | None = None) -> None:
    """A new event file; with `purge_step`, TensorBoard hides the earlier files' events from that step on."""
    if self._tb is not None:
      self._tb.close()
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top  # optional, see except
      self._tb = SummaryWriter(self._tb_dir, purge_step=purge_step)
    except Exception as e:  # pylint: disable=broad-except  # TensorBoard is a nicety
      self._tb, self._tb_dir = None, None
      logging.warning("TensorBoard disabled: %s", e)

  def _open(self) -> None:
    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

  def _append(self, data: bytes) -> None:
    size = os.fstat(self._fd).st_size
    try:
      written = os.write(self._fd, data)
      if written == len(data):
        return
      error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a short write: the disk filled up mid-line
    except OSError as e:
      error = e
    try:
      os.ftruncate(self._fd, size)
    except OSError:
      logging.warning("%s: could not cut off a partly written line; a resumed run drops it", self.path)
    raise OSError(error.errno, error.strerror, str(self.path))

  def truncate_after(self, step: int) -> None:
    if self._tb_dir is not None:  # the steps a resumed run writes again are not shown twice in TensorBoard
      self._open_tensorboard(purge_step=step + 1)
    if not self.active or not self.path.exists():
      return
    lines = self._lines if self._remote else self.path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if self._remote:
      self._lines = keep
      self.flush()
      return
    os.close(self._fd)
    paths.write_text_atomic(self.path, "".join(keep))
    self._open()

  def write(self, step: int, tokens: int, metrics: Mapping[str, Any]) -> None:
    if not self.active:
      return
    line = json.dumps({"step": int(step), "tokens": int(tokens), **metrics}) + "\n"
    if self._remote:
      self._lines.append(line)
      if time.time() - self._uploaded_at > self._upload_seconds:
        self.flush()
    else:
      self._append(line.encode("utf-8"))
    if self._tb is None and self._tb_dir is not None:
      self._open_tensorboard()
    if self._tb is not None:
      for k, v in metrics.items():
        if isinstance(v, (int, float)):
          self._tb.add_scalar(k, v, step)

  def flush(self) -> None:
    """Makes every written line durable (a no-op locally, where each line already is)."""
    if self.active and self._remote:
      paths.write_text_atomic(self.path, "".join(self._lines))  # retried on transient errors
      self._uploaded_at = time.time()

  def close(self) -> None:
    try:
      self.flush()
    finally:
      if self._fd is not None:
        os.close(self._fd)
        self._fd = None
      if self._tb is not None:
        self._tb.close()


def _step_of(line: str) -> int | None:
  """The step of a metrics line; None for a blank or torn one (a kill -9 in the middle of a write)."""
  try:
    return int(json.loads(line)["step"]) if line.strip() else None
  except (ValueError, KeyError, TypeError):
    logging.warning("metrics.jsonl: dropping an unreadable line %r", line[:80])
    return None


def read_metrics(workdir: str, missing_ok: bool = False) -> list[dict[str, Any]]:
  """Every line of WORKDIR/metrics.jsonl; a line being written (or torn by a kill) is skipped."""
  path = paths.path(workdir) / "metrics.jsonl"
  if missing_ok and not path.exists():
    return []
  out = []
  for line in path.read_text().splitlines():
    try:
      out.append(json.loads(line))
    except ValueError:
      continue
  return out
