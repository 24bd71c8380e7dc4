"""Record datasets on disk: TFDS-style ArrayRecord datasets, written and read without TensorFlow.

Every dataset cpt_jax makes (corpora, bAbI, self-generated replay) is written through `write_dataset`, so
that it is a real TFDS dataset (`tfds.builder_from_directory` opens it, on local disk or GCS) with
random access for Grain. Records are flat dicts of `str` and `int` fields, or int32 token lists.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

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

  _Builder.name = name
  builder = _Builder(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(verify_ssl=False))
  return dataset_dir(data_dir, name)


class RecordSource:
  """Random-access view of one split: `len(src)`, `src[i] -> dict` with text decoded to `str`.

  `path` is a dataset version directory (`.../name/1.0.0`), which may be on GCS.
  """

  def __init__(self, path: str | os.PathLike, split: str):
    tfds = _tfds()
    path = str(path)
    info_path = os.path.join(path, "dataset_info.json")
    from etils import epath  # pylint: disable=g-import-not-at-top

    if not epath.Path(info_path).exists():
      raise DataError(
          f"no dataset at {path} (missing dataset_info.json). Prepare it first, e.g. "
          "`python -m cpt_jax.data.prepare`, or fix the data path in your config.")
    builder = tfds.builder_from_directory(path)
    if split not in builder.info.splits:
      raise DataError(f"dataset {path} has no split {split!r}; it has {sorted(builder.info.splits)}")
    self._source = builder.as_data_source(split=split)
    if len(self._source) == 0:
      raise DataError(f"split {split!r} of dataset {path} is empty; regenerate the dataset")
    self.path, self.split = path, split

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = self._source[index]
    return {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in record.items()}

  def __repr__(self) -> str:
    return f"RecordSource({self.path!r}, split={self.split!r}, n={len(self)})"


def tfds_source(name: str, split: str, data_dir: str | None = None) -> RecordSource:
  """Any prepared TFDS dataset by name (e.g. on GCS via data_dir=gs://...), newest version."""
  tfds = _tfds()
  builder = tfds.builder(name, data_dir=data_dir)
  return RecordSource(builder.data_dir, split)


def read_info(path: str | os.PathLike) -> dict[str, Any]:
  return json.loads((Path(path) / "dataset_info.json").read_text())
