"""Write failures: a checkpoint that cannot be written stops the run with exit 74 and one `error:` line, the last
committed checkpoint restores and the rerun resumes exactly; a metrics line is written whole or not at all."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cpt_jax import checkpoint, loop, metrics, paths

sys.path.insert(0, str(Path(__file__).parent))
import cli_utils  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position

FILE_LIMIT = 256 * 1024  # above every file a run writes but its checkpoints' tensor data (≈ 0.5 MB of parameters)


def test_checkpoint_write_failure_exits_74_and_the_rerun_resumes_exactly(tiny_config_factory, pretrained,
                                                                         corpus_dir, tmp_path):
  """The kernel refuses the checkpoint's writes (a file-size limit: EFBIG, the same path as ENOSPC and EDQUOT)
  in Orbax's background save of step 12 of a run resumed from step 8."""
  workdir = tmp_path / "w"
  cfg = tiny_config_factory(**{"train.stop_at_step": 8})
  with pytest.raises(loop.Preempted):
    loop.run(cfg, str(workdir))
  env = cli_utils.cli_env(tmp_path, corpus_dir, tokenizer=Path(pretrained[0]) / "tokenizer.model")
  env.pop("JAX_COMPILATION_CACHE_DIR")  # its entries are larger than the limit too
  env["CPT_JAX_TEST_DATA"] = cfg.data.data_dir  # prepared already: nothing large to write there

  # The child sets the limit itself (no fork hook in this multithreaded process); Python ignores SIGXFSZ, so a
  # write past the limit fails with EFBIG.
  cmd = cli_utils.train_cmd(workdir, "--config.train.compile_cache=false")  # cache entries exceed the limit too
  cmd[1:3] = ["-c", "import resource, runpy; resource.setrlimit(resource.RLIMIT_FSIZE, "
              f"({FILE_LIMIT}, {FILE_LIMIT})); runpy.run_module('cpt_jax.train', run_name='__main__', alter_sys=True)"]
  full = subprocess.run(cmd, env=env, cwd=cli_utils.REPO, capture_output=True, text=True, timeout=300, check=False)
  errors = cli_utils.error_lines(full.stderr)
  assert full.returncode == 74 and len(errors) == 1, full.stderr[-3000:]
  # Orbax and TensorStore log their own failure (with tracebacks); cpt_jax's code never raises one through
  # (the package's own files: a clone named cpt_jax has the libraries' files under …/cpt_jax/.venv/ too)
  assert f'File "{os.path.join(cli_utils.REPO, "cpt_jax")}/' not in full.stderr, full.stderr[-3000:]
  assert "cannot write checkpoint step 12" in errors[0] and ": File too large (" in errors[0], errors[0]
  assert "last committed checkpoint is step 8" in errors[0] and "rerun the same command" in errors[0]
  assert checkpoint.committed_steps(str(workdir / "checkpoints")) == [4, 8]
  # space is freed: the same command resumes from step 8 (the failed save's leftovers are cleaned up)
  summary = loop.run(tiny_config_factory(**{"train.stop_at_step": 8}), str(workdir))
  assert summary["steps"] == 20
  assert cli_utils.train_losses(workdir) == cli_utils.train_losses(pretrained[0])


def test_a_failed_metrics_write_leaves_no_partial_line(tmp_path, monkeypatch):
  writer = metrics.MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(1, 256, {"train/loss": 5.0})
  real_write = os.write

  def half_then_full(fd, data):  # the disk fills up in the middle of the line
    monkeypatch.setattr(os, "write", real_write)
    return real_write(fd, data[:len(data) // 2])

  monkeypatch.setattr(os, "write", half_then_full)
  with pytest.raises(OSError) as e:
    writer.write(2, 512, {"train/loss": 4.0})
  assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "metrics.jsonl")
  text = (tmp_path / "metrics.jsonl").read_text()
  assert [json.loads(line)["step"] for line in text.splitlines()] == [1] and text.endswith("\n")
  writer.write(2, 512, {"train/loss": 4.0})  # space freed: the next write appends whole lines again
  writer.close()
  assert [r["step"] for r in metrics.read_metrics(str(tmp_path))] == [1, 2]


def test_a_full_disk_while_writing_a_record_keeps_the_old_one(tmp_path, monkeypatch):
  target = tmp_path / "config.json"
  target.write_text('{"old": 1}')

  def full(self, data):  # half the file, then the disk is full
    Path(os.fspath(self)).write_bytes(data[:3])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

  monkeypatch.setattr(type(paths.path(tmp_path)), "write_bytes", full)
  with pytest.raises(OSError) as e:
    paths.write_text_atomic(target, '{"new": 2}')
  assert e.value.errno == errno.ENOSPC
  assert target.read_text() == '{"old": 1}' and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_retries_are_bounded_and_only_for_transient_errors(monkeypatch):
  monkeypatch.setattr(paths, "RETRY_FIRST_DELAY_S", 0.001)
  calls = []

  def always(exc):
    def fn():
      calls.append(exc)
      raise exc
    return fn

  class HttpError(Exception):  # gcsfs's, duck-typed by its `code`
    code = 503

  with pytest.raises(paths.StorageError, match="cannot write gs://b/metrics.jsonl: HttpError.*after 6 attempts"):
    paths.retry(always(HttpError("backend unavailable")), "gs://b/metrics.jsonl")
  assert len(calls) == 6
  calls.clear()
  with pytest.raises(PermissionError):  # not transient: at once
    paths.retry(always(PermissionError("forbidden")), "gs://b/x")
  assert len(calls) == 1
  flaky = iter([TimeoutError("slow"), ConnectionResetError("reset")])

  def twice_then_ok():
    e = next(flaky, None)
    if e:
      raise e
    return "ok"

  assert paths.retry(twice_then_ok, "gs://b/y") == "ok"
