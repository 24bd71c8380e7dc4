"""Hugging Face datasets as sources (`kind: hf`): prepared once into this project's ArrayRecord format.

A source names a hub dataset (`name`, `NAME` or `NAME:CONFIG`, read with the `datasets` library in streaming
mode where the machine has internet) or a local `path`: a Parquet file, a JSON Lines file, a directory or glob
of either, or a `save_to_disk` directory (Arrow stream files). Documents are streamed batch by batch into a TFDS-layout
dataset (`records.write_dataset_streaming`), so memory stays bounded whatever the corpus size; the text
field is `text_field`. A source with no validation split holds out documents 0, k, 2k, … of its order (k =
`validation_every`), so even a small source has one; a hub dataset without one (FineWeb-Edu has only train) is
split the same way. `max_documents` keeps the first N documents of each split it reads: the hub is streamed,
so only that slice of a large corpus is downloaded and written. Process 0 prepares; the others wait for it and
read the same dataset.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import jax
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
from jax.experimental import multihost_utils

from cpt_jax.data import records
from cpt_jax.data.records import DataError

BATCH_ROWS = 1024  # documents read at a time: the memory bound of preparation


def _files(path: str) -> list[str]:
  """The data files of a local path: a file, a directory (recursively) or a glob."""
  if os.path.isdir(path):
    found = [f for ext in ("parquet", "jsonl", "json", "arrow")
             for f in glob.glob(os.path.join(path, "**", f"*.{ext}"), recursive=True)]
  else:
    found = glob.glob(path)
  files = sorted(f for f in found if os.path.isfile(f) and not f.endswith(("dataset_info.json", "state.json",
                                                                            "dataset_dict.json")))
  if not files:
    raise DataError(f"no Parquet, JSON Lines or Arrow files at {path!r}; give a file, a directory or a glob of "
                    "them, or a save_to_disk directory")
  return files


def _split_of(file: str, splits: tuple[str, ...]) -> str | None:
  """The split a file belongs to by its name (train-00000.parquet, validation/…, data/test-…), if any."""
  parts = Path(file).as_posix().lower().split("/")[-3:]
  for split in splits:
    aliases = {"validation": ("validation", "valid", "val", "dev")}.get(split, (split,))
    if any(p == a or p.startswith(a + "-") or p.startswith(a + "_") or p.startswith(a + ".") for p in parts
           for a in aliases):
      return split
  return None


def _batches(file: str) -> Iterator[list[dict[str, Any]]]:
  if file.endswith(".parquet"):
    # pre_buffer off: pyarrow would otherwise keep the whole file's column chunks in memory while iterating
    for batch in pq.ParquetFile(file, pre_buffer=False, buffer_size=1 << 20).iter_batches(batch_size=BATCH_ROWS):
      yield batch.to_pylist()
  elif file.endswith(".arrow"):
    with pa.memory_map(file) as source:
      try:
        reader = pa.ipc.open_stream(source)
      except pa.ArrowInvalid:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
          yield reader.get_batch(i).to_pylist()
        return
      for batch in reader:
        yield batch.to_pylist()
  else:
    with open(file, encoding="utf-8") as f:
      rows = []
      for n, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise DataError(f"{file}:{n} is not valid JSON ({e.msg})") from None
        if len(rows) == BATCH_ROWS:
          yield rows
          rows = []
      if rows:
        yield rows


def _hub(name: str):
  """(the `datasets` module, dataset path, config) of a hub name `NAME` or `NAME:CONFIG`."""
  try:
    import datasets  # pylint: disable=g-import-not-at-top  # optional: hub names only
  except ImportError:
    raise DataError(f"hf source name={name!r}: reading a hub dataset needs the `datasets` library (pip install "
                    "datasets) and internet; or download it and set the source's path") from None
  path, _, config = name.partition(":")  # "HuggingFaceFW/fineweb-edu:sample-10BT": dataset and its config
  return datasets, path, config or None


def _hub_splits(name: str) -> list[str]:
  datasets, path, config = _hub(name)
  try:
    return list(datasets.get_dataset_split_names(path, config))
  except Exception as e:  # pylint: disable=broad-except  # offline, unknown name, gated: one message
    raise DataError(f"hf source name={name!r}: cannot list its splits ({type(e).__name__}: {str(e)[:160]}); "
                    "check the name and the machine's internet, or download it and set the source's path") from None


def _hub_documents(name: str, split: str) -> Iterator[dict[str, Any]]:
  datasets, path, config = _hub(name)
  return iter(datasets.load_dataset(path, config, split=split, streaming=True))


def _texts(docs: Iterator[dict[str, Any]], text_field: str, where: str) -> Iterator[str]:
  for doc in docs:
    if text_field not in doc:
      raise DataError(f"{where}: a record has fields {sorted(doc)[:12]}, no {text_field!r}; set the source's "
                      "text_field")
    text = doc[text_field]
    if isinstance(text, str) and text.strip():
      yield text


def dataset_name(source_cfg) -> str:
  """Names everything that decides the prepared documents: source, field, and splits and cap where they are not
  the defaults (so datasets prepared before those fields existed keep their names)."""
  where = os.path.abspath(source_cfg.path) if source_cfg.path else ""
  ident = f"{source_cfg.name}|{where}|{source_cfg.text_field}"
  splits, cap = (source_cfg.train_split, source_cfg.eval_split), source_cfg.get("max_documents", 0)
  if splits != ("train", "validation") or cap:
    ident += f"|{splits[0]}|{splits[1]}|{cap}"
  return "hf_" + hashlib.sha1(ident.encode()).hexdigest()[:12]


def prepare(source_cfg, data_dir: Path, validation_every: int = 1000) -> str:
  """The prepared dataset's directory (written on first use by process 0, in bounded memory)."""
  name = dataset_name(source_cfg)
  if not records.exists(data_dir, name):
    if jax.process_index() == 0:
      _write(source_cfg, data_dir, name, validation_every)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"cpt_jax_hf_{name}")
  return str(records.dataset_dir(data_dir, name))


def _write(source_cfg, data_dir: Path, name: str, validation_every: int) -> None:
  field, wanted = source_cfg.text_field, (source_cfg.train_split, source_cfg.eval_split)
  cap = source_cfg.get("max_documents", 0)
  if source_cfg.path:
    files = _files(source_cfg.path)
    by_split = {s: [f for f in files if _split_of(f, wanted) == s] for s in wanted}
    if not any(by_split.values()):  # one unnamed split
      by_split = {wanted[0]: files}
    unread = [f for f in files if not any(f in fs for fs in by_split.values())]
    if unread:
      logging.warning("hf source %s: %d file(s) match neither split name %s and are not read, e.g. %s",
                      source_cfg.path, len(unread), wanted, unread[0])

    def documents(split):
      for f in by_split[split]:
        for batch in _batches(f):
          yield from _texts(iter(batch), field, f)

    named = {s for s in wanted if by_split.get(s)}
  else:
    def documents(split):
      yield from _texts(_hub_documents(source_cfg.name, split), field, source_cfg.name)

    available = _hub_splits(source_cfg.name)
    if wanted[0] not in available:
      raise DataError(f"hf source name={source_cfg.name!r} has no split {wanted[0]!r} (it has {available}); set the "
                      "source's train_split")
    named = {s for s in wanted if s in available}
    if wanted[1] not in named:
      logging.warning("hf source %s has no split %r (it has %s): every %dth document of %r is held out for it%s",
                      source_cfg.name, wanted[1], available, validation_every, wanted[0],
                      "" if cap else "; each split streams the train split, so set max_documents for a large corpus")

  def split_texts(split):
    """`split`'s documents among the source's first `cap` (all if 0); with no eval split, documents 0, k, 2k, …
    of those are held out of train for it."""
    hold_out = wanted[1] not in named
    stream = documents(wanted[0] if hold_out else split)
    for index, text in enumerate(itertools.islice(stream, cap or None)):
      if not hold_out or (index % validation_every == 0) == (split == wanted[1]):
        yield {"text": text}

  logging.info("preparing Hugging Face dataset %s (%s%s) into %s", source_cfg.name or source_cfg.path, field,
               f", its first {cap} documents" if cap else "", records.dataset_dir(data_dir, name))
  records.write_dataset_streaming(data_dir, name, {s: split_texts(s) for s in wanted}, {"text": "text"},
                                  description=f"{source_cfg.name or source_cfg.path}, field {field}"
                                  + (f", first {cap} documents" if cap else ""))
