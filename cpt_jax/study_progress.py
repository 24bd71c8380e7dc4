"""What the study runner shows while its cells run in subprocesses: a bar over all cells' tokens, one per
running cell, and an ETA measured from the cells' own metrics.jsonl."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import ml_collections
from tqdm import tqdm

from cpt_jax import build, console, metrics as metrics_lib

if TYPE_CHECKING:
  from cpt_jax.study_grid import Cell


def cell_tokens(cell: Cell) -> int:
  """Tokens a cell trains (replay cells: samples), as its run will round them: the unit of the study's bar."""
  if cell.kind == "replay":
    return int(cell.config["tokens"])
  if cell.config is None:  # a reused pretraining run: not this study's work
    return 0
  cfg = ml_collections.ConfigDict(cell.config)
  per_step = build.tokens_per_step(cfg)
  return math.ceil(build.token_budget(cfg, build.num_params_of(cfg)) / per_step) * per_step


def cell_progress(workdir: Path) -> tuple[int, float | None]:
  """(tokens trained, latest training loss) of a running cell, from the tail of its metrics.jsonl."""
  try:
    with open(workdir / "metrics.jsonl", "rb") as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - 16_384))
      tail = f.read().decode("utf-8", "replace").splitlines()
  except OSError:
    return 0, None
  tokens, loss = 0, None
  for line in reversed(tail):
    try:
      m = json.loads(line)
    except ValueError:  # the cut first line of the tail, or a line being written
      continue
    tokens = max(tokens, int(m.get("tokens", 0)))
    if "train/loss" in m:
      loss = m["train/loss"]
      break
  return tokens, loss


def training_rate(workdir: Path) -> float | None:
  """A finished cell's training tokens/s (steps only: compilation and evaluations are left out)."""
  lines = metrics_lib.read_metrics(str(workdir), missing_ok=True)
  rates = [m["train/tokens_per_sec"] for m in lines if m.get("train/tokens_per_sec")]
  return sum(rates) / len(rates) if rates else None


class StudyProgress:
  """What the runner shows while its cells run in subprocesses (whose own bars are off: their output goes to
  log files). On a terminal: a bar over all cells' tokens and one per running cell, read from the cells'
  metrics.jsonl. Elsewhere: each finished cell's log line carries the same outlook.

  The ETA is measured: each finished cell gives its training rate (tokens/s over steps) and its overhead
  (wall time not spent in steps: process start, compilation, data, evaluations); a cell still to run costs
  the mean overhead plus its tokens at the mean rate of the finished cells of its kind. Kinds differ: a
  pretraining run's overhead (tokenizer training, corpus packing: ~14 min for a 1M-parameter model) charged to
  every adaptation cell (~1.5 min) overstated a study's ETA 3×, so a kind with no finished cell yet is
  counted at the measured rate of the others and no overhead. With `jobs` cells at a time the sum is shared
  among them. Before any cell has finished: tokens over wall time."""

  def __init__(self, cells: list[Cell], t0: float, terminal: bool | None = None, jobs: int = 1):
    self._budget = {c.id: cell_tokens(c) for c in cells}
    self._pending = {c.id for c in cells if not c.done}
    self._n_cells, self._t0, self._jobs = len(cells), t0, max(1, jobs)
    self._finished = self._initial = sum(self._budget[c.id] for c in cells if c.done)
    self._total = sum(self._budget.values())
    self._running: dict[str, tuple[Cell, tqdm, float]] = {}
    self._kind = {c.id: c.kind for c in cells}
    # (kind, overhead seconds, training tokens/s) per finished cell
    self._measured: list[tuple[str, float, float]] = []
    self._failed = 0
    self._terminal = sys.stderr.isatty() if terminal is None else terminal
    self._bar = tqdm(total=self._total, initial=self._finished, unit="tok", unit_scale=True, desc="study",
                     dynamic_ncols=True, file=sys.stderr, disable=not self._terminal,
                     bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} tok [{elapsed}{postfix}]")

  @property
  def tokens(self) -> int:
    return self._finished + sum(min(cell_progress(c.workdir)[0], self._budget[c.id])
                                for c, _, _ in self._running.values())

  def start(self, cell: Cell) -> None:
    bar = tqdm(total=self._budget[cell.id], unit="tok", unit_scale=True, desc=f"  {cell.id}", leave=False,
               dynamic_ncols=True, file=sys.stderr, disable=not self._terminal)
    self._running[cell.id] = (cell, bar, time.time())

  def poll(self) -> None:
    for cell, bar, _ in self._running.values():
      tokens, loss = cell_progress(cell.workdir)
      bar.n = min(tokens, bar.total)
      if loss is not None:
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
      bar.refresh()
    self._bar.n = self.tokens
    self._bar.set_postfix_str(self.outlook(), refresh=False)
    self._bar.refresh()

  def finish(self, cell: Cell, ok: bool) -> None:
    _, bar, started = self._running.pop(cell.id)
    bar.close()
    self._pending.discard(cell.id)
    self._failed += not ok
    if ok:
      self._finished += self._budget[cell.id]
      rate = training_rate(cell.workdir)
      if rate:
        overhead = max(0.0, time.time() - started - self._budget[cell.id] / rate)
        self._measured.append((cell.kind, overhead, rate))
    self.poll()

  def seconds_left(self) -> float | None:
    now = time.time()
    if self._measured:
      per_cell = []
      for cid in self._pending:
        budget = self._budget[cid]
        overhead, rate = self._expected(self._kind[cid])
        if cid in self._running:
          cell, _, started = self._running[cid]
          tokens = min(cell_progress(cell.workdir)[0], budget)
          per_cell.append(max((budget - tokens) / rate, overhead + budget / rate - (now - started)))
        else:
          per_cell.append(overhead + budget / rate)
      # `jobs` cells at a time, each at the rate measured while they ran side by side
      return max(sum(per_cell) / self._jobs, max(per_cell, default=0.0))
    done = self.tokens - self._initial
    return (self._total - self.tokens) * (now - self._t0) / done if done > 0 else None

  def _expected(self, kind: str) -> tuple[float, float]:
    """(overhead seconds, tokens/s) a cell of this kind is expected to take: the means over the finished
    cells of its kind, else no overhead at the mean rate of all finished cells."""
    same = [(o, r) for k, o, r in self._measured if k == kind]
    if same:
      return sum(o for o, _ in same) / len(same), sum(r for _, r in same) / len(same)
    return 0.0, sum(r for _, _, r in self._measured) / len(self._measured)

  def outlook(self) -> str:
    """'k of n cells done, about M min left'."""
    text = f"{self._n_cells - len(self._pending) - self._failed} of {self._n_cells} cells done"
    text += f", {self._failed} failed or blocked" if self._failed else ""
    left = self.seconds_left() if self._pending else None
    return text + (f", about {console.duration(left)} left" if left is not None else "")

  def blocked(self, cell: Cell) -> None:
    """A cell that will not run this time (a cell it needs failed)."""
    if cell.id in self._pending:
      self._pending.discard(cell.id)
      self._failed += 1

  def close(self) -> None:
    for _, bar, _ in self._running.values():
      bar.close()
    self._bar.close()
