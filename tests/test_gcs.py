"""A gs:// workdir end to end, against a local GCS emulator (gcp-storage-emulator, in memory).

Everything a run writes goes through GCS's JSON API here exactly as on a TPU VM: config.json, tokenizer.model,
metrics.jsonl, before.json and summary.json through etils.epath + gcsfs, checkpoints through Orbax +
TensorStore's GCS driver. Both are pointed at the emulator by their documented environment variables.
"""

from __future__ import annotations

import json
import logging
import os
import socket

import pytest

from cpt_jax import loop, metrics, paths

BUCKET = "cpt-test"


@pytest.fixture(scope="module")
def gcs():
  from gcp_storage_emulator.server import create_server  # pylint: disable=g-import-not-at-top  # a test extra
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
  server.start()
  url = f"http://127.0.0.1:{port}"
  saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL",
                                          "GOOGLE_AUTH_TOKEN_FOR_TESTING")}
  os.environ.update(STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url, GOOGLE_AUTH_TOKEN_FOR_TESTING="test")
  yield f"gs://{BUCKET}"
  server.stop()
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


def _losses(workdir):
  return [(r["step"], r["train/loss"]) for r in metrics.read_metrics(workdir) if "train/loss" in r]


def test_gcs_workdir_trains_resumes_and_adapts(gcs, tiny_config_factory, pretrained, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a gs:// path mistaken for a local one would appear here as ./gs:/...
  for attempt in range(2):
    try:
      return _train_resume_adapt(f"{gcs}/attempt{attempt}", tiny_config_factory, pretrained, tmp_path)
    except ValueError as e:
      # The emulator's object generations occasionally confuse TensorStore's OCDBT manifest writes (about 1
      # run in 6 here; a known TensorStore symptom with non-Google stores, never seen on GCS). Only that
      # error earns one retry in fresh directories; anything else fails the test.
      if "Malformed StorageGeneration" not in str(e) or attempt:
        raise
      logging.warning("GCS emulator flake, retrying once: %s", str(e)[:200])


def _train_resume_adapt(root, tiny_config_factory, pretrained, tmp_path):
  pre = f"{root}/pretrain"
  with pytest.raises(loop.Preempted):
    loop.run(tiny_config_factory(**{"train.stop_at_step": 8}), pre)
  run = paths.path(pre)
  assert {"config.json", "tokenizer.model", "metrics.jsonl", "checkpoints"} <= {p.name for p in run.iterdir()}
  assert (run / "checkpoints" / "8" / "commit_success.txt").exists()
  assert not (run / "summary.json").exists()  # stopped, not finished

  summary = loop.run(tiny_config_factory(), pre)  # the same command again: resumes from step 8 on GCS
  assert _losses(pre) == _losses(str(pretrained[0]))  # = an uninterrupted local run, step by step
  assert json.loads((run / "summary.json").read_text())["steps"] == summary["steps"] == 20
  assert not os.path.exists("gs:") and not any(p.name.startswith("gs") for p in tmp_path.iterdir())

  adapt_cfg = tiny_config_factory(**{
      "stage": "adapt", "init_from": pre, "data.target.kind": "babi", "data.target.babi_stories": 8,
      "data.target.babi_tasks": "1,2", "train.total_tokens": 8 * 32 * 2, "train.babi_eval_examples": 0})
  adapt = f"{root}/adapt"
  loop.run(adapt_cfg, adapt)
  first_eval = next(r for r in metrics.read_metrics(adapt) if "eval/base/loss" in r)
  # the weights came from the GCS run: same base loss on the same validation rows as where it ended
  assert first_eval["eval/base/loss"] == pytest.approx(summary["final"]["eval/base/loss"], abs=1e-6)
  assert json.loads((paths.path(adapt) / "before.json").read_text())["eval/base/loss"] == first_eval["eval/base/loss"]
  assert (paths.path(adapt) / "tokenizer.model").read_bytes() == (run / "tokenizer.model").read_bytes()


def test_unwritable_gcs_workdir_is_one_clear_error(gcs, tiny_config_factory):
  from cpt_jax.config import ConfigError  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match="workdir gs://no-such-bucket/run is not writable.*bucket"):
    loop.run(tiny_config_factory(), "gs://no-such-bucket/run")
