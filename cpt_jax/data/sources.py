"""From a source config (data.base / data.target) to random-access record sources, preparing data that
cpt_jax makes itself (corpora, bAbI) the first time it is needed."""

from __future__ import annotations

import glob
import json
import logging
import os
from pathlib import Path
from typing import Any

from cpt_jax.data import corpora, hf_datasets, records
from cpt_jax.data.corpora import default_data_dir
from cpt_jax.data.babi import dataset as babi_dataset, fileformat as babi_fileformat, generate as babi_generate
from cpt_jax.data.babi import render as babi_render
from cpt_jax.data.records import DataError, RecordSource


def data_dir_of(data_cfg) -> Path:
  return Path(data_cfg.data_dir) if data_cfg.data_dir else default_data_dir()


def babi_tasks(spec: str) -> list[int]:
  if spec.strip() == "all":
    return list(range(1, 21))
  try:
    tasks = [int(t) for t in spec.split(",") if t.strip()]
  except ValueError:
    raise DataError(f"babi_tasks={spec!r}: give 'all' or comma-separated task numbers 1-20") from None
  if not tasks or any(not 1 <= t <= 20 for t in tasks):
    raise DataError(f"babi_tasks={spec!r}: task numbers must be in 1..20")
  return tasks


def dataset_path(source_cfg, data_dir: Path, seed: int = 0) -> str:
  """The dataset directory of a source, preparing it first when cpt_jax makes it. `seed` (the run's) is not
  used: bAbI stories come from `babi_data_seed`, so runs of every seed train on the same stories."""
  del seed
  kind = source_cfg.kind
  if kind == "corpus":
    return str(corpora.prepare_corpus(source_cfg.name, data_dir))
  if kind == "babi":
    tasks = babi_tasks(source_cfg.babi_tasks)
    data_seed = source_cfg.get("babi_data_seed", 0)  # a config.json from before the field: seed 0
    cap = max_statements(source_cfg)
    name = (f"babi_{source_cfg.babi_mode}_{source_cfg.babi_stories}_t{'-'.join(map(str, tasks))}_s{data_seed}"
            f"{f'_m{cap}' if cap else ''}_g{babi_generate.GENERATOR_VERSION}")
    out = data_dir / name
    if not (out / "dataset_info.json").exists():
      babi_dataset.write_babi_dataset(out, mode=source_cfg.babi_mode, num_stories_per_task=source_cfg.babi_stories,
                                      seed=data_seed, tasks=tasks, max_statements=cap)
    return str(out)
  if kind == "records":
    return source_cfg.path
  if kind == "tfds":
    return records.tfds_dir(source_cfg.name, source_cfg.path or None)
  if kind == "hf":
    return hf_datasets.prepare(source_cfg, data_dir)
  raise DataError(f"source kind {kind!r} has no dataset directory")


def max_statements(source_cfg) -> int:
  """The source's limit on statements per bAbI story (0: none; a config.json from before the field: none)."""
  return int(source_cfg.get("babi_max_statements", 0))


def _story_text(story) -> str:
  return babi_fileformat.format_stories([story])


def babi_heldout(source_cfg, mode: str, data_dir: Path, stories: int, eval_seed: int, exclude_stories: int
                 ) -> list[dict[str, Any]]:
  """Held-out bAbI test records of `mode` for the source's tasks: `stories` stories per task generated with
  `eval_seed` (apart from every training pool), minus those whose text is among the first `exclude_stories`
  stories of the training stream (`mode`, `babi_data_seed`). A training split of up to that many stories per
  task is a part of that pool (generation is sequential), so no returned story is in the training data of a
  run of either variant with babi_stories ≤ exclude_stories. Cached in data_dir (the same for every run)."""
  tasks = babi_tasks(source_cfg.babi_tasks)
  data_seed = source_cfg.get("babi_data_seed", 0)
  cap = max_statements(source_cfg)  # the test stories are as long as the training stories
  name = (f"babi_heldout_{mode}_{stories}_t{'-'.join(map(str, tasks))}_e{eval_seed}_x{exclude_stories}"
          f"{f'_m{cap}' if cap else ''}_g{babi_generate.GENERATOR_VERSION}"
          f"_s{data_seed}.jsonl")
  path = data_dir / name
  if path.exists():
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
  rows, dropped = [], {}
  for task in tasks:
    pool = {_story_text(s) for s in babi_generate.generate_stories(task, mode, exclude_stories, data_seed, cap)}
    kept = 0
    for index, story in enumerate(babi_generate.generate_stories(task, mode, stories, eval_seed, cap)):
      if _story_text(story) in pool:
        dropped[task] = dropped.get(task, 0) + 1
        continue
      kept += 1
      rows += [{"prompt": p, "completion": c, "task": task, "story_id": f"{mode}-e{eval_seed}-qa{task}-{index}"}
               for p, c in babi_render.render_story(story)]
    if not kept:
      raise DataError(f"bAbI {mode} task {task}: all {stories} test stories (seed {eval_seed}) are training "
                      f"stories; raise train.babi_eval_stories or change data.target.babi_eval_seed")
  if dropped:
    logging.info("bAbI %s test stories: dropped those also in the training pool, per task %s", mode, dropped)
  data_dir.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")  # cells of a study may write it at once
  tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  os.replace(tmp, path)
  return rows


class ListSource:
  """Records held in memory (local text/JSONL files)."""

  def __init__(self, rows: list[dict[str, Any]], name: str):
    if not rows:
      raise DataError(f"{name}: no records")
    self._rows, self.name = rows, name

  def __len__(self):
    return len(self._rows)

  def __getitem__(self, i):
    return self._rows[i]

  def __repr__(self):
    return f"ListSource({self.name!r}, n={len(self)})"


def _file_source(pattern: str, split: str) -> ListSource:
  """`path` is a glob that may contain {split}: .txt files are one document each; .jsonl lines are records."""
  files = sorted(glob.glob(pattern.format(split=split)))
  if not files:
    raise DataError(f"no files match {pattern.format(split=split)!r} (data path for split {split!r})")
  rows = []
  for f in files:
    if os.path.isdir(f):
      raise DataError(f"{f} is a directory, matched by the data path {pattern!r}: make the glob match files only "
                      "(e.g. DIR/{split}_*.txt)")
    with open(f, "rb") as fh:
      raw = fh.read()
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise DataError(f"{f} is not valid UTF-8 (byte {e.start}); re-encode it as UTF-8") from None
    if "\0" in text:  # valid UTF-8 yet binary (NUL bytes never occur in text): the glob matched the wrong files
      raise DataError(f"{f} is binary, not text (NUL byte at {text.index(chr(0))}); make the data path match "
                      "UTF-8 .txt or .jsonl files only")
    if f.endswith(".jsonl"):
      for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
          try:
            row = json.loads(line)
          except json.JSONDecodeError as e:
            raise DataError(f"{f}:{n} is not valid JSON ({e.msg})") from None
          if not records.is_record(row):
            raise DataError(f"{f}:{n} is not a record: each line must be a JSON object with 'text', "
                            "'prompt'+'completion' or 'tokens'")
          rows.append(row)
    elif text.strip():
      rows.append({"text": text})
  return ListSource(rows, pattern.format(split=split))


def open_source(source_cfg, split: str, data_dir: Path, seed: int = 0):
  if source_cfg.kind == "files":
    return _file_source(source_cfg.path, split)
  path = dataset_path(source_cfg, data_dir, seed)
  if source_cfg.kind == "babi":
    source = babi_dataset.BabiSource(path, split)
    if len(source) == 0:
      raise DataError(f"bAbI split {split!r} at {path} is empty: raise babi_stories "
                      f"(now {source_cfg.babi_stories} per task; 10 % of them go to each held-out split)")
    return source
  return RecordSource(path, split)


def iter_texts(source, limit_chars: int):
  """Texts of a source for tokenizer training (prompt+completion for task data)."""
  seen = 0
  for i in range(len(source)):
    r = source[i]
    text = r.get("text") or (r.get("prompt", "") + r.get("completion", ""))
    seen += len(text)
    yield text
    if seen >= limit_chars:
      return
  logging.info("tokenizer trained on all %d records (%d chars)", len(source), seen)


__all__ = ["default_data_dir", "open_source", "iter_texts", "records"]
