"""Record datasets on disk: TFDS-style ArrayRecord datasets, written and read without TensorFlow.

Every dataset cpt_jax makes (corpora, bAbI, self-generated replay) is written through `write_dataset`, so
that it is a real TFDS dataset (`tfds.builder_from_directory` opens it, on local disk or GCS) with
random access for Grain. Records are flat dicts of `str` and `int` fields, or int32 token lists.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter
from etils import epath

VERSION = "1.0.0"
_FEATURE_KINDS = ("text", "int", "tokens")


class DataError(ValueError):
  """A data file or dataset is missing or unusable; the message says which and what to do."""


def _tfds():
  # Imported lazily: tfds costs ~1 s to import and most entry points never write datasets.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  tfds.disable_progress_bar()
  return tfds


def _feature_spec(features: Mapping[str, str]):
  tfds = _tfds()
  spec = {}
  for key, kind in features.items():
    if kind == "text":
      spec[key] = tfds.features.Text()
    elif kind == "int":
      spec[key] = tfds.features.Scalar(dtype=np.int64)
    elif kind == "tokens":
      spec[key] = tfds.features.Tensor(shape=(None,), dtype=np.int32)
    else:
      raise ValueError(f"feature {key!r}: kind {kind!r} is not one of {_FEATURE_KINDS}")
  return tfds.features.FeaturesDict(spec)


def dataset_dir(data_dir: str | os.PathLike, name: str) -> Path:
  return Path(data_dir) / name / VERSION


def exists(data_dir: str | os.PathLike, name: str) -> bool:
  return (dataset_dir(data_dir, name) / "dataset_info.json").exists()


def write_dataset(
    data_dir: str | os.PathLike,
    name: str,
    splits: Mapping[str, Iterable[Mapping[str, Any]]],
    features: Mapping[str, str],
    description: str = "",
) -> Path:
  """Writes `splits` as the TFDS dataset `data_dir/name/1.0.0` in ArrayRecord format; returns its dir.

  TFDS writes to a temporary directory and renames it at the end, so a crash never leaves a half
  dataset that later looks complete.
  """
  tfds = _tfds()
  feature_spec = _feature_spec(features)
  split_rows = {split: rows for split, rows in splits.items()}

  class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(VERSION)

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, description=description, features=feature_spec)

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(rows) for split, rows in split_rows.items()}

    def _generate_examples(self, rows):
      for i, row in enumerate(rows):
        yield i, dict(row)

    def _log_download_bytes(self):  # TFDS prints these two to stdout; the caller logs what it made
      pass

    def _log_download_done(self):
      pass

  _Builder.name = name
  builder = _Builder(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(verify_ssl=False))
  return dataset_dir(data_dir, name)


def write_dataset_streaming(
    data_dir: str | os.PathLike,
    name: str,
    splits: Mapping[str, Iterable[Mapping[str, Any]]],
    features: Mapping[str, str],
    description: str = "",
    shard_rows: int = 10_000,  # ArrayRecordWriter holds a shard's index in memory: keep shards modest
) -> Path:
  """Like `write_dataset`, in memory bounded by one row: rows are serialized straight into ArrayRecord shards
  (TFDS's own writer buffers examples in memory up to 1 GB before it spills), then TFDS metadata is written
  for them. Rows keep their order. Written in a temporary directory renamed at the end, so an interrupted
  preparation never looks complete."""
  tfds = _tfds()
  feature_spec = _feature_spec(features)
  final = dataset_dir(data_dir, name)
  tmp = final.with_name(final.name + ".incomplete")
  if tmp.exists():
    shutil.rmtree(tmp)
  tmp.mkdir(parents=True)
  split_infos = []
  for split, rows in splits.items():
    lengths, num_bytes, writer = [], 0, None
    for row in rows:
      if writer is None or lengths[-1] == shard_rows:
        if writer is not None:
          writer.close()
        writer = ArrayRecordWriter(str(tmp / f"{name}-{split}.array_record-{len(lengths):05d}.tmp"), "group_size:1")
        lengths.append(0)
      data = feature_spec.serialize_example(dict(row))
      writer.write(data)
      lengths[-1] += 1
      num_bytes += len(data)
    if writer is None:  # an empty split still has one (empty) shard: TFDS lists splits by their files
      writer = ArrayRecordWriter(str(tmp / f"{name}-{split}.array_record-00000.tmp"), "group_size:1")
      lengths.append(0)
    writer.close()
    for i in range(len(lengths)):  # TFDS names shards -IIIII-of-NNNNN: the count is known only now
      os.rename(tmp / f"{name}-{split}.array_record-{i:05d}.tmp",
                tmp / f"{name}-{split}.array_record-{i:05d}-of-{len(lengths):05d}")
    split_infos.append(tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=num_bytes))
  template = tfds.core.ShardedFileTemplate(data_dir=tmp, template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
                                           dataset_name=name, filetype_suffix="array_record")
  tfds.folder_dataset.write_metadata(data_dir=tmp, features=feature_spec, split_infos=split_infos,
                                     filename_template=template, check_data=False, description=description,
                                     disable_shuffling=True)
  if final.exists():
    shutil.rmtree(final)
  os.rename(tmp, final)
  return final


class RecordSource:
  """Random-access view of one split: `len(src)`, `src[i] -> dict` with text decoded to `str`.

  `path` is a dataset version directory (`.../name/1.0.0`), which may be on GCS. Opening reads the first
  record of (up to 16 of) its shards, so a missing or damaged shard fails here, before any compilation.
  """

  def __init__(self, path: str | os.PathLike, split: str):
    tfds = _tfds()
    path = str(path)
    if not (epath.Path(path) / "dataset_info.json").exists():
      what = "is a file" if epath.Path(path).is_file() else (
          "has no dataset_info.json" if epath.Path(path).is_dir() else "does not exist")
      raise DataError(f"no dataset at {path}: it {what}. Give the version directory of a dataset written by "
                      "cpt_jax or TFDS (.../NAME/1.0.0, which holds dataset_info.json), or fix the path in your config")
    try:
      builder = tfds.builder_from_directory(path)
      splits = builder.info.splits
    except Exception as e:  # pylint: disable=broad-except  # TFDS raises JSON, protobuf and key errors
      raise DataError(f"dataset {path} is damaged: its dataset_info.json is unreadable ({_why(e)}); write the "
                      "dataset again, or restore it from a backup") from None
    if split not in splits:
      raise DataError(f"dataset {path} has no split {split!r}; it has {sorted(splits)}")
    try:
      self._source = builder.as_data_source(split=split)
    except Exception as e:  # pylint: disable=broad-except  # e.g. a TFRecord dataset: no random access
      raise DataError(f"split {split!r} of dataset {path} cannot be opened for random access ({_why(e)}); cpt_jax "
                      "reads ArrayRecord datasets: write it again with file_format=array_record") from None
    if len(self._source) == 0:
      raise DataError(f"split {split!r} of dataset {path} is empty; regenerate the dataset")
    self.path, self.split = path, split
    starts = np.cumsum([0] + list(splits[split].shard_lengths))[:-1].tolist() or [0]
    for j in sorted({round(k * (len(starts) - 1) / 15) for k in range(16)}):
      record = self[int(starts[j])]
      if not is_record(record):
        raise DataError(f"dataset {path} has records with fields {sorted(record)}; cpt_jax reads 'text', "
                        "'prompt'+'completion' or 'tokens' records")

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    try:
      record = self._source[index]
    except IndexError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # ArrayRecord raises RuntimeError for bad files
      raise DataError(f"record {index} of split {self.split!r} of dataset {self.path} is unreadable ({_why(e)}): "
                      "a shard file is missing or damaged; write the dataset again") from None
    if any(v is None for v in record.values()):  # what a truncated ArrayRecord file yields
      raise DataError(f"record {index} of split {self.split!r} of dataset {self.path} is empty: a shard file is "
                      "truncated or damaged; write the dataset again")
    return {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in record.items()}

  def __repr__(self) -> str:
    return f"RecordSource({self.path!r}, split={self.split!r}, n={len(self)})"


def is_record(row: Any) -> bool:
  """Whether `row` has the fields the packers read: 'text', 'prompt'+'completion' or 'tokens'."""
  return isinstance(row, dict) and bool({"text", "tokens"} & row.keys() or {"prompt", "completion"} <= row.keys())


def _why(e: Exception) -> str:
  line = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
  return f"{type(e).__name__}: {line}" if line else type(e).__name__


def tfds_dir(name: str, data_dir: str | None = None) -> str:
  """The version directory of the prepared TFDS dataset `name` (newest version), or a DataError saying why not."""
  tfds = _tfds()
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except Exception as e:  # pylint: disable=broad-except  # DatasetNotFoundError, ValueError for a bad name
    where = f"data_dir {data_dir}" if data_dir else "the default TFDS data_dir"
    why = "" if type(e).__name__ == "DatasetNotFoundError" else f" ({_why(e)})"
    raise DataError(f"no TFDS dataset {name!r} in {where} or the TFDS catalog{why}; check the source's name, or "
                    "set its path to the data_dir that holds NAME/VERSION/") from None
  if not (epath.Path(builder.data_dir) / "dataset_info.json").exists():
    raise DataError(f"TFDS dataset {name!r} is not prepared at {builder.data_dir}: prepare it first "
                    f"(tfds build {name} --data_dir DIR --file_format array_record) and set the source's path to DIR")
  return builder.data_dir


def tfds_source(name: str, split: str, data_dir: str | None = None) -> RecordSource:
  """Any prepared TFDS dataset by name (e.g. on GCS via data_dir=gs://...), newest version."""
  return RecordSource(tfds_dir(name, data_dir), split)


def read_info(path: str | os.PathLike) -> dict[str, Any]:
  return json.loads((Path(path) / "dataset_info.json").read_text())
