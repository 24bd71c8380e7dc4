"""A gs:// workdir end to end through the CLI, against a local GCS emulator (gcp-storage-emulator, in memory).

`python -m cpt_jax.train --workdir gs://…` runs in subprocesses exactly as on a TPU VM: config.json,
tokenizer.model, metrics.jsonl, before.json and summary.json go through etils.epath + gcsfs, checkpoints through
Orbax + TensorStore's GCS driver, all over GCS's JSON API. Both clients are pointed at the emulator by their
documented environment variables (STORAGE_EMULATOR_HOST; TENSORSTORE_GCS_HTTP_URL with
GOOGLE_AUTH_TOKEN_FOR_TESTING), so nothing can fall back to a local directory unnoticed: the subprocesses run
in an empty directory, which is checked to stay empty.

The emulator is a test extra: without it these tests fail (an ImportError), they are never skipped.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote

import pytest

from cpt_jax import lease as lease_lib, loop, metrics, paths

sys.path.insert(0, str(Path(__file__).parent))
import cli_utils  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position

BUCKET = "cpt-test"
FAULTS: dict[str, int] = {}  # object-name fragment -> how many more of its uploads the emulator fails with 503
FAILED: list[str] = []  # the uploads it failed


@pytest.fixture(scope="module")
def gcs():
  """(gs://BUCKET, environment variables pointing gcsfs and TensorStore at a fresh in-memory emulator)."""
  from gcp_storage_emulator import server as emulator  # pylint: disable=g-import-not-at-top  # a test extra
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  with pytest.MonkeyPatch.context() as mp:
    _send_generation_headers(mp, emulator)
    _preconditions_and_faults(mp, emulator)
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    url = f"http://127.0.0.1:{port}"
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test"}
    for k, v in env.items():  # this process reads the bucket through gcsfs too
      mp.setenv(k, v)
    yield f"gs://{BUCKET}", env
    server.stop()


def _send_generation_headers(mp, emulator):
  """Makes the emulator's media downloads carry `x-goog-generation`, as GCS's do.

  TensorStore takes the generation of a ranged read from that header; without it the generation is 0, and the
  next read that revalidates the cached entry (`ifGenerationNotMatch=0`) is refused before it is sent:
  "Malformed StorageGeneration" (TensorStore's GCS driver accepts only generations > 0). Whether a
  revalidation happens depends on timing, so unpatched about one checkpoint save in a few fails, in
  Orbax's OCDBT manifest read.
  """
  original = emulator.objects.download

  def download(request, response, storage, *args, **kwargs):
    original(request, response, storage, *args, **kwargs)
    if response.status in (200, 206):
      obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
      response["x-goog-generation"] = str(obj["generation"])
      response["x-goog-metageneration"] = str(obj["metageneration"])

  mp.setattr(emulator.objects, "download", download)  # objects.get (…?alt=media) calls it by this name
  for _, handlers in emulator.HANDLERS:  # the download routes hold the function itself
    for method, handler in list(handlers.items()):
      if handler is original:
        mp.setitem(handlers, method, download)


def _preconditions_and_faults(mp, emulator):
  """Uploads and deletes of lease objects honour `ifGenerationMatch` (HTTP 412 otherwise), as GCS's do: the
  emulator ignores it, and the lease rests on it (TensorStore's conditional writes are left as they were). Uploads
  whose object name contains a key of FAULTS fail with 503 while its count lasts: a flaky service."""

  def generation(storage, request, name) -> int:
    try:
      return int(storage.get_file_obj(request.params["bucket_name"], unquote(name))["generation"])
    except Exception:  # pylint: disable=broad-except  # absent
      return 0

  def refused(request, response, storage, name) -> bool:
    want = request.query.get("ifGenerationMatch")
    if want and name.endswith(lease_lib.LEASE_FILE) and generation(storage, request, name) != int(want[0]):
      response.status = HTTPStatus.PRECONDITION_FAILED
      response.json({"error": {"code": 412, "message": "Precondition Failed"}})
      return True
    return False

  def wrap_insert(original):
    def insert(request, response, storage, *args, **kwargs):
      name = (request.query.get("name") or [""])[0]
      if not name and isinstance(request.data, dict):  # multipart: the name is in the metadata part
        name = (request.data.get("meta") or {}).get("name", "")
      for key, left in FAULTS.items():
        if key in name and left > 0:
          FAULTS[key] -= 1
          FAILED.append(name)
          response.status = HTTPStatus.SERVICE_UNAVAILABLE
          response.json({"error": {"code": 503, "message": "injected: backend unavailable"}})
          return None
      if refused(request, response, storage, name):
        return None
      return original(request, response, storage, *args, **kwargs)
    return insert

  def wrap_delete(original):
    def delete(request, response, storage, *args, **kwargs):
      if refused(request, response, storage, request.params["object_id"]):
        return None
      return original(request, response, storage, *args, **kwargs)
    return delete

  replaced = {emulator.objects.insert: wrap_insert(emulator.objects.insert),
              emulator.objects.delete: wrap_delete(emulator.objects.delete)}
  for _, handlers in emulator.HANDLERS:  # the routes hold the functions themselves
    for method, handler in list(handlers.items()):
      if handler in replaced:
        mp.setitem(handlers, method, replaced[handler])


def _run(env, cwd, workdir, *overrides):
  return subprocess.run(cli_utils.train_cmd(workdir, *overrides), env=env, cwd=cwd, capture_output=True, text=True,
                        timeout=300, check=False)


def _losses(workdir):
  return [(r["step"], r["train/loss"]) for r in metrics.read_metrics(workdir) if "train/loss" in r]


def _forget_listings():
  """gcsfs caches listings (and so sizes) per process; the trainer subprocesses changed the bucket since."""
  from etils.epath import backend  # pylint: disable=g-import-not-at-top
  backend.fsspec_backend.fs(f"gs://{BUCKET}").invalidate_cache()  # the instance epath.Path uses


def test_gcs_workdir_trains_resumes_and_adapts_through_the_cli(gcs, corpus_dir, pretrained, tmp_path):
  bucket, gcs_env = gcs
  # The in-process `pretrained` run's tokenizer, so that its losses are the uninterrupted reference.
  env = {**cli_utils.cli_env(tmp_path, corpus_dir, tokenizer=Path(pretrained[0]) / "tokenizer.model"), **gcs_env}
  cwd = tmp_path / "cwd"  # a gs:// path mistaken for a local one would appear here as gs:/...
  cwd.mkdir()
  pre = f"{bucket}/cli/pretrain"
  run = paths.path(pre)

  few_saves = f"--config.train.checkpoint_every_tokens={8 * 32 * 16}"  # steps 8 (the stop), 16, 20: each is HTTP
  stopped = _run(env, cwd, pre, few_saves, "--config.train.stop_at_step=8")
  assert stopped.returncode == 75, stopped.stderr[-3000:]
  assert {"config.json", "tokenizer.model", "metrics.jsonl", "checkpoints"} <= {p.name for p in run.iterdir()}
  assert (run / "checkpoints" / "8" / "commit_success.txt").exists()
  assert [s for s, _ in _losses(pre)] == list(range(1, 9))  # every line its checkpoint covers is on GCS
  assert not (run / "summary.json").exists()  # stopped, not finished

  resumed = _run(env, cwd, pre, few_saves)  # the same command again: resumes from step 8 on GCS
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  _forget_listings()
  assert "resumed from step 8 of gs://" in resumed.stderr
  assert _losses(pre) == _losses(str(pretrained[0]))  # = an uninterrupted local run, step by step
  summary = json.loads((run / "summary.json").read_text())
  assert summary["steps"] == 20

  adapt = f"{bucket}/cli/adapt"
  adapted = _run(env, cwd, adapt, "--config.stage=adapt", f"--config.init_from={pre}",
                 "--config.data.tokenizer=",  # the tokenizer is read from the gs:// run it starts from
                 "--config.data.target.kind=babi", "--config.data.target.babi_stories=8",
                 "--config.data.target.babi_tasks=1,2", f"--config.train.total_tokens={8 * 32 * 2}",
                 "--config.train.babi_eval_examples=0")
  assert adapted.returncode == 0, adapted.stderr[-3000:]
  _forget_listings()
  first_eval = next(r for r in metrics.read_metrics(adapt) if "eval/base/loss" in r)
  # the weights came from the GCS run: same base loss on the same validation rows as where it ended
  assert first_eval["eval/base/loss"] == pytest.approx(summary["final"]["eval/base/loss"], abs=1e-6)
  assert json.loads((paths.path(adapt) / "before.json").read_text())["eval/base/loss"] == first_eval["eval/base/loss"]
  assert (paths.path(adapt) / "tokenizer.model").read_bytes() == (run / "tokenizer.model").read_bytes()
  assert json.loads((paths.path(adapt) / "summary.json").read_text())["stage"] == "adapt"
  assert not any(cwd.iterdir()), sorted(p.name for p in cwd.iterdir())


def test_unwritable_gcs_workdir_is_one_clear_error(gcs, corpus_dir, pretrained, tmp_path):
  _, gcs_env = gcs
  env = {**cli_utils.cli_env(tmp_path, corpus_dir, tokenizer=Path(pretrained[0]) / "tokenizer.model"), **gcs_env}
  proc = _run(env, tmp_path, "gs://no-such-bucket/run")
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = cli_utils.error_lines(proc.stderr)
  assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "workdir gs://no-such-bucket/run is not writable" in errors[0] and "bucket" in errors[0]


def test_gcs_lease_is_exclusive_and_taken_over_when_stale(gcs, caplog):
  bucket, _ = gcs
  workdir = f"{bucket}/lease/run"
  first = lease_lib.Lease(workdir, 600)
  first.acquire()
  obj = paths.path(workdir) / lease_lib.LEASE_FILE
  assert json.loads(obj.read_text())["id"] == first.id
  with pytest.raises(lease_lib.WorkdirBusy, match=f"pid {os.getpid()} on host {socket.gethostname()}"):
    lease_lib.Lease(workdir, 600).acquire()  # alive on this host
  first.renew()
  first.check()
  # a run elsewhere that judged this one dead took the lease over: the next renewal's precondition fails
  thief = lease_lib.Lease(workdir, 600)
  thief._rec.update(host="elsewhere", pid=1)  # pylint: disable=protected-access
  thief._store.write(thief._rec, thief._store.read()[1])  # pylint: disable=protected-access
  first.renew()
  with pytest.raises(lease_lib.WorkdirBusy, match="another run took over workdir .* pid 1 on host elsewhere"):
    first.check()
  first.release()  # leaves the other run's lease alone
  assert json.loads(obj.read_text())["host"] == "elsewhere"
  stale = dict(json.loads(obj.read_text()), renewed=time.time() - 1000)
  obj.write_text(json.dumps(stale))
  with caplog.at_level(logging.WARNING):
    with lease_lib.hold(workdir, 600) as held:
      assert json.loads(obj.read_text())["id"] == held.id
  assert "took over the lease" in caplog.text and "not renewed for 1000 s" in caplog.text
  _forget_listings()
  assert not obj.exists()  # released
  # this host name and a live pid, but another boot: a recreated VM that got the old name
  obj.write_text(json.dumps(dict(stale, host=socket.gethostname(), pid=os.getpid(), boot="another boot",
                                 renewed=time.time())))
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    with lease_lib.hold(workdir, 600):
      pass
  assert "its host was restarted since" in caplog.text


def test_gcs_transient_failures_are_retried_and_change_nothing(gcs, tiny_config_factory, pretrained, monkeypatch,
                                                               caplog):
  """503s from the service on checkpoint and metrics uploads (gcsfs and TensorStore retry them) and timeouts at
  cpt_jax's own write layer (paths.retry): the run completes with the losses of an undisturbed run."""
  bucket, _ = gcs
  workdir = f"{bucket}/flaky/{os.getpid()}"
  monkeypatch.setattr(paths, "RETRY_FIRST_DELAY_S", 0.01)
  monkeypatch.setitem(FAULTS, "/checkpoints/", 2)
  monkeypatch.setitem(FAULTS, "metrics.jsonl", 1)
  FAILED.clear()
  real_retry, timeouts = paths.retry, []

  def flaky(fn, what, verb="write"):
    def first_try_times_out():
      if what not in timeouts:
        timeouts.append(what)
        raise TimeoutError("injected")
      return fn()
    return real_retry(first_try_times_out, what, verb)

  monkeypatch.setattr(paths, "retry", flaky)
  cfg = tiny_config_factory(**{"data.tokenizer": str(Path(pretrained[0]) / "tokenizer.model"),
                               "train.checkpoint_every_tokens": 8 * 32 * 8})
  with caplog.at_level(logging.WARNING):
    summary = loop.run(cfg, workdir)
  _forget_listings()
  assert summary["steps"] == 20
  assert _losses(workdir) == _losses(str(pretrained[0]))
  assert FAULTS["/checkpoints/"] == FAULTS["metrics.jsonl"] == 0, FAULTS
  assert any("/checkpoints/" in n for n in FAILED) and any("metrics.jsonl" in n for n in FAILED), FAILED
  for name in ("metrics.jsonl", "config.json", "summary.json", lease_lib.LEASE_FILE):
    assert any(w.endswith(name) for w in timeouts), (name, timeouts)
  assert "retry 1 of 5" in caplog.text
  assert json.loads((paths.path(workdir) / "summary.json").read_text())["steps"] == 20
