"""What a study config means: the grid of runs it expands to (pretraining per size or per stage, midtraining,
self-generated replay pools, adaptation cells per seed), in the order they should run, each with its own config.

`expand` writes nothing; the runner (cpt_jax/study.py) runs the cells, `study_cost` prices them and
`study_results` collects them. The config keys are documented in cpt_jax/study.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import Any

import ml_collections

from cpt_jax import build
from cpt_jax.research.report.common import matches_any

GENERATED = "@generated"


class MissingPrerequisite(ValueError):
  """A run the study starts from is not there (or not far enough) yet; the message names the command."""


@dataclasses.dataclass
class Cell:
  id: str
  kind: str  # "pretrain" | "midtrain" | "replay" | "adapt"
  workdir: Path
  config: dict[str, Any] | None
  labels: dict[str, str]
  needs: list[str]

  stage_steps: tuple[int, ...] = ()  # a reused pretraining run: the checkpoint steps the study starts from

  @property
  def done(self) -> bool:
    if self.reused and self.stage_steps:  # finished, or (still running / stopped) with every stage committed
      return (self.workdir / "summary.json").exists() or all(
          (self.workdir / "checkpoints" / str(s)).is_dir() for s in self.stage_steps)
    return self.done_file.exists()

  @property
  def done_file(self) -> Path:
    """The file whose existence means the cell finished (written last by its run)."""
    return self.workdir / ("summary.json" if self.kind != "replay" else "self_replay/1.0.0/dataset_info.json")

  @property
  def reused(self) -> bool:
    return self.kind == "pretrain" and self.config is None


def _apply(cfg: ml_collections.ConfigDict, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  for path, value in overrides.items():
    node = cfg
    *parents, leaf = path.split(".")
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise ValueError(f"study override {path}={value!r}: no such config field")
    node[leaf] = value
  return cfg


def _plain(d) -> dict[str, Any]:
  return dict(d.to_dict() if hasattr(d, "to_dict") else d)


def _stage_step(cfg, ptpp: float) -> int:
  return max(1, math.ceil(ptpp * build.num_params_of(cfg) / (cfg.data.batch_size * cfg.model.max_len)))


def _midtrain(pre: ml_collections.ConfigDict, overrides: dict[str, Any], pre_dir: Path, step: int):
  """The phase's run config: the pretraining config with `overrides`, continuing from `pre_dir` at `step` on data.base
  (an adapt-stage run whose target is the base corpus)."""
  mid = _apply(pre, overrides)
  with mid.unlocked():
    mid.stage, mid.init_from, mid.init_step = "adapt", str(pre_dir), step
    mid.train.ptpp, mid.train.save_at_ptpp = 0.0, ""
    mid.data.target = ml_collections.ConfigDict(mid.data.base.to_dict())
  if mid.train.atpp <= 0 and mid.train.total_tokens <= 0:
    raise ValueError("study.midtrain: give the phase's length (train.total_tokens or train.atpp)")
  return mid


def _final_step(cfg: ml_collections.ConfigDict) -> int:
  return max(1, math.ceil(build.token_budget(cfg, build.num_params_of(cfg)) / build.tokens_per_step(cfg)))


def expand(study: ml_collections.ConfigDict, root: Path) -> list[Cell]:
  """All runs of the study in dependency order: pretrain per size (or per size and stage), midtrain and replay per
  (size, stage), adapt cells (one per seed)."""
  cells: list[Cell] = []
  stages = [float(p) for p in study.ptpp]
  sizes = study.sizes.items() if hasattr(study.sizes, "items") else study.sizes
  per_stage = bool(study.get("pretrain_per_stage", False))
  seeds = [int(x) for x in (study.get("seeds", None) or [study.adapt.seed])]
  seed_axis = ("seed", [(f"s{x}", {"seed": x}) for x in seeds]) if study.get("seeds", None) else None
  axes = [(a, v) for a, v in study.axes] + ([seed_axis] if seed_axis else [])
  for size, size_over in sizes:
    size_over = _plain(size_over)
    reused = _plain(study.get("pretrained", None) or {}).get(size)
    if reused and per_stage:
      raise ValueError(f"study.pretrained[{size!r}]: a reused pretraining run serves every stage from one schedule; "
                       "it cannot stand in for pretrain_per_stage=True (one run per stage)")
    runs = [(f"{size}_ptpp{p:g}", [p]) for p in stages] if per_stage else [(size, stages)]
    pre_by_stage = {}
    for run_id, run_stages in runs:
      pre = _apply(study.pretrain, size_over)
      with pre.unlocked():
        pre.stage, pre.train.ptpp, pre.train.total_tokens = "pretrain", max(run_stages), 0
        pre.train.save_at_ptpp = ",".join(f"{p:g}" for p in run_stages)
      pre_dir = root / "pretrain" / run_id
      if reused:
        pre_dir = Path(reused).resolve()
        made_by = _plain(study.get("pretrained_command", None) or {}).get(size) or (
            f"python -m cpt_jax.train --config <its pretraining config> --workdir {reused}")
        pre = _reused_pretrain(pre, pre_dir, stages, size, made_by)
      cells.append(Cell(f"pretrain/{run_id}", "pretrain", pre_dir, None if reused else pre.to_dict(),
                        {"size": size} | ({"ptpp": f"{run_stages[0]:g}"} if per_stage else {}), [],
                        tuple(_stage_step(pre, p) for p in stages) if reused else ()))
      pre_by_stage.update({p: (f"pretrain/{run_id}", pre, pre_dir) for p in run_stages})
    for ptpp in stages:
      pre_id, pre, pre_dir = pre_by_stage[ptpp]
      stage_id = f"{size}_ptpp{ptpp:g}"
      start_id, start_dir, start_step = pre_id, pre_dir, _stage_step(pre, ptpp)
      if study.get("midtrain", None):
        label, mid_over = study.midtrain
        mid = _midtrain(pre, _plain(mid_over), pre_dir, start_step)
        start_id, start_dir, start_step = f"midtrain/{stage_id}", root / "midtrain" / stage_id, _final_step(mid)
        cells.append(Cell(start_id, "midtrain", start_dir, mid.to_dict(),
                          {"size": size, "ptpp": f"{ptpp:g}", "midtrain": label}, [pre_id]))
      replay_dir = root / "replay" / stage_id
      needs_replay = study.replay_tokens > 0 and any(
          _plain(ov).get("replay.samples") == GENERATED for _, values in study.axes for _, ov in values)
      if needs_replay:
        cells.append(Cell(f"replay/{stage_id}", "replay", replay_dir,
                          {"workdir": str(start_dir), "step": start_step, "tokens": study.replay_tokens,
                           "seed": study.pretrain.seed}, {"size": size, "ptpp": f"{ptpp:g}"}, [start_id]))
      for combo in itertools.product(*[values for _, values in axes]):
        labels = {"size": size, "ptpp": f"{ptpp:g}"}
        overrides = dict(size_over)
        for (axis, _), (label, ov) in zip(axes, combo):
          labels[axis] = label
          overrides.update(_plain(ov))
        if matches_any(labels, study.get("exclude", None)):
          continue
        if overrides.get("replay.samples") == GENERATED:
          overrides["replay.samples"] = str(replay_dir / "self_replay" / "1.0.0")
        cfg = _apply(study.adapt, overrides)
        with cfg.unlocked():
          cfg.stage, cfg.init_from, cfg.init_step = "adapt", str(start_dir), start_step
        cell_id = "_".join([stage_id] + [labels[a] for a, _ in axes])
        needs = [start_id] + ([f"replay/{stage_id}"] if needs_replay else [])
        cells.append(Cell(f"cells/{cell_id}", "adapt", root / "cells" / cell_id, cfg.to_dict(), labels, needs))
  return _in_priority_order(cells, study.get("first", None))


def _in_priority_order(cells: list[Cell], first) -> list[Cell]:
  """Adapt cells ranked by the first `first` entry they match (unmatched last); a prerequisite takes the best
  rank of the cells that need it, and runs ahead of them. Grid order within a rank."""
  if not first:
    return cells
  rank = {c.id: next((i for i, entry in enumerate(first) if matches_any(c.labels, [entry])), len(first))
          if c.kind == "adapt" else math.inf for c in cells}
  for _ in range(4):  # adapt ← replay ← midtrain ← pretrain: a fixed point within four passes
    for c in cells:
      for n in c.needs:
        rank[n] = min(rank[n], rank[c.id])
  return sorted(cells, key=lambda c: (rank[c.id], c.kind == "adapt"))


def _reused_pretrain(pre: ml_collections.ConfigDict, pre_dir: Path, stages: list[float], size: str, made_by: str):
  """The config of an existing pretraining run that stands in for a size's pretrain cell (checked)."""
  where = f"study.pretrained[{size!r}]={str(pre_dir)!r}"
  if not (pre_dir / "config.json").exists():
    raise MissingPrerequisite(f"this study starts from the pretraining run {pre_dir}, which does not exist yet; "
                              f"make it first: {made_by}")
  run = ml_collections.ConfigDict(json.loads((pre_dir / "config.json").read_text()))
  if run.stage != "pretrain":
    raise ValueError(f"{where}: is a {run.stage} run, not a pretraining run")
  for field, mine, theirs in (("model", _plain(pre.model), _plain(run.model)),
                              ("data.vocab_size", pre.data.vocab_size, run.data.vocab_size)):
    if mine != theirs:
      raise ValueError(f"{where}: its {field} {theirs} differs from the study's size {size!r}: {mine}")
  saved = {round(float(x), 9) for x in run.train.save_at_ptpp.split(",") if x.strip()}
  missing = [f"{p:g}" for p in stages if round(p, 9) not in saved]
  if missing:
    raise ValueError(f"{where}: its train.save_at_ptpp={run.train.save_at_ptpp!r} lacks the study's PTPP "
                     f"stages {missing}; pretrain again with them or drop them from study.ptpp")
  return run


def check_reused(cells: list[Cell]) -> None:
  """A reused pretraining run must hold a checkpoint at each stage its adapt cells start from: it is finished
  (summary.json; then a missing stage is an error) or it has already passed every stage."""
  reused = {str(c.workdir): c for c in cells if c.reused}
  for c in reused.values():
    if not c.done:
      raise MissingPrerequisite(f"reused pretraining run {c.workdir} has not reached the study's stages (steps "
                       f"{list(c.stage_steps)}; no summary.json); finish it (rerun its python -m cpt_jax.train "
                       "command) before this study")
  for c in cells:
    if c.kind == "adapt" and c.config["init_from"] in reused \
        and not (Path(c.config["init_from"]) / "checkpoints" / str(c.config["init_step"])).is_dir():
      raise ValueError(f"{c.id}: the reused pretraining run {c.config['init_from']} has no checkpoint at step "
                       f"{c.config['init_step']} (PTPP {c.labels['ptpp']})")
