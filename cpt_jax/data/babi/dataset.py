"""Train / validation / test splits of rendered bAbI, written as ArrayRecord files for Grain.

Splits are made by story, never by question, so no story (and no prefix of one) is in two splits.
One record is the JSON-encoded bytes of {"prompt", "completion", "task", "story_id"}.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Iterable

from array_record.python.array_record_module import ArrayRecordWriter

from cpt_jax.data.babi.generate import check_task, generate_stories
from cpt_jax.data.babi.render import render_story

SPLITS = ("train", "validation", "test")


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
  if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
    raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction}: each must be >= 0 and "
                     "their sum < 1")
  n_val, n_test = round(n * val_fraction), round(n * test_fraction)
  return n - n_val - n_test, n_val, n_test


def build_babi_splits(mode: str, num_stories_per_task: int, seed: int, tasks: Iterable[int] = range(1, 21),
                      val_fraction: float = 0.1, test_fraction: float = 0.1, max_statements: int = 0
                      ) -> dict[str, list[dict]]:
  """Generates each task's stories, shuffles the stories (seeded), cuts them into the three splits and
  renders one record per question."""
  out: dict[str, list[dict]] = {s: [] for s in SPLITS}
  for task in tasks:
    check_task(task)
    stories = generate_stories(task, mode, num_stories_per_task, seed, max_statements)
    order = list(range(len(stories)))
    random.Random(f"babi-split/{mode}/{task}/{seed}").shuffle(order)
    n_train, n_val, _ = split_sizes(len(stories), val_fraction, test_fraction)
    for rank, index in enumerate(order):
      split = SPLITS[0] if rank < n_train else SPLITS[1] if rank < n_train + n_val else SPLITS[2]
      story_id = f"{mode}-s{seed}-qa{task}-{index}"
      for prompt, completion in render_story(stories[index]):
        out[split].append({"prompt": prompt, "completion": completion, "task": task, "story_id": story_id})
  return out


def write_babi_dataset(out_dir: str | os.PathLike, mode: str = "synthetic", num_stories_per_task: int = 1000,
                       seed: int = 0, tasks: Iterable[int] = range(1, 21), val_fraction: float = 0.1,
                       test_fraction: float = 0.1, max_statements: int = 0) -> Path:
  """Writes `<out_dir>/<split>.array_record` and `dataset_info.json` (counts and generation args);
  dataset_info.json is written last, so its presence marks a complete dataset."""
  tasks = list(tasks)
  splits = build_babi_splits(mode, num_stories_per_task, seed, tasks, val_fraction, test_fraction, max_statements)
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  for split, records in splits.items():
    writer = ArrayRecordWriter(str(out / f"{split}.array_record"), "group_size:1")
    for record in records:
      writer.write(json.dumps(record).encode("utf-8"))
    writer.close()
  info = {
      "name": "babi", "format": "array_record", "record": "json",
      "args": {"mode": mode, "num_stories_per_task": num_stories_per_task, "seed": seed, "tasks": tasks,
               "val_fraction": val_fraction, "test_fraction": test_fraction, "max_statements": max_statements},
      "splits": {split: {"num_examples": len(records),
                         "num_stories": len({r["story_id"] for r in records})} for split, records in splits.items()},
  }
  (out / "dataset_info.json").write_text(json.dumps(info, indent=2))
  return out


class BabiSource:
  """Random-access records of one split (`len`, `[i] -> dict`); pass it to `grain.MapDataset.source`."""

  def __init__(self, out_dir: str | os.PathLike, split: str):
    path = Path(out_dir) / f"{split}.array_record"
    if not path.exists():
      raise FileNotFoundError(f"no bAbI split {split!r} at {path}; write it with write_babi_dataset() "
                              f"(splits: {', '.join(SPLITS)})")
    import grain  # ~1 s to import; generating and writing bAbI (python -m cpt_jax.data.babi) never reads it
    self._source = grain.sources.ArrayRecordDataSource([str(path)])
    self.path, self.split = str(path), split

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return json.loads(self._source[index])

  def __repr__(self) -> str:
    return f"BabiSource({self.path!r}, n={len(self)})"
