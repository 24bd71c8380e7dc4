"""One run per workdir: a second training on a live workdir is refused with one line naming the holder, while
the first finishes undisturbed; stale leases (dead process, not renewed) are taken over with a warning."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpt_jax import lease as lease_lib, loop

sys.path.insert(0, str(Path(__file__).parent))
import cli_utils  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position


def _record(workdir: Path, **fields) -> None:
  rec = {"id": "other", "host": socket.gethostname(), "pid": os.getpid(), "started": time.time() - 60,
         "renewed": time.time(), "argv": "python -m cpt_jax.train --workdir elsewhere", **fields}
  (workdir / lease_lib.LEASE_FILE).write_text(json.dumps(rec))


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_second_training_on_a_live_workdir_is_refused(tiny_config_factory, pretrained, corpus_dir, tmp_path,
                                                      monkeypatch):
  """The first run (in this process) pauses at step 5 while a second one starts on its workdir through the CLI."""
  workdir = tmp_path / "w"
  env = cli_utils.cli_env(tmp_path, corpus_dir, tokenizer=Path(pretrained[0]) / "tokenizer.model")
  second = {}
  cli_utils.at_training_batch(monkeypatch, 5, lambda: second.update(proc=cli_utils.run_cli(env, workdir)))
  summary = loop.run(tiny_config_factory(), str(workdir))
  proc = second["proc"]
  errors = cli_utils.error_lines(proc.stderr)
  assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert f"workdir {workdir} is in use by another run: pid {os.getpid()} on host {socket.gethostname()}" in errors[0]
  assert "since" in errors[0] and f"kill {os.getpid()}" in errors[0] and "another --workdir" in errors[0]
  assert summary["steps"] == 20
  assert cli_utils.train_losses(workdir) == cli_utils.train_losses(pretrained[0])  # the first run undisturbed
  assert not (workdir / lease_lib.LEASE_FILE).exists()  # released at the end


def test_live_lease_refused_in_process_and_released(tmp_path):
  first = lease_lib.Lease(str(tmp_path), 600)
  first.acquire()
  rec = json.loads((tmp_path / lease_lib.LEASE_FILE).read_text())
  assert rec["id"] == first.id and rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()
  with pytest.raises(lease_lib.WorkdirBusy, match=f"pid {os.getpid()} on host"):
    lease_lib.Lease(str(tmp_path), 600).acquire()  # the lock is held (by another open file of this process)
  first.release()
  assert not (tmp_path / lease_lib.LEASE_FILE).exists()
  again = lease_lib.Lease(str(tmp_path), 600)
  again.acquire()
  again.release()


def test_stale_leases_are_taken_over_with_a_warning(tmp_path, caplog):
  dead = _dead_pid()
  _record(tmp_path, pid=dead)  # this host, process gone (a SIGKILLed run; the lock went with it)
  with caplog.at_level(logging.WARNING):
    with lease_lib.hold(str(tmp_path), 600) as held:
      assert json.loads((tmp_path / lease_lib.LEASE_FILE).read_text())["id"] == held.id
  assert f"its process {dead} is gone" in caplog.text and "took over the lease" in caplog.text
  _record(tmp_path, host="elsewhere", renewed=time.time() - 1000)  # another host, not renewed for 1000 s
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    with lease_lib.hold(str(tmp_path), 600):
      pass
  assert "not renewed for 1000 s" in caplog.text


def test_holder_on_another_host_is_watched_for_the_timeout(tmp_path, caplog):
  # fresh, by a clock 5 s ahead of this one: maybe alive (its lock, on its host, is invisible here)
  _record(tmp_path, host="elsewhere", renewed=time.time() + 5)
  t0 = time.monotonic()
  with caplog.at_level(logging.WARNING):
    with lease_lib.hold(str(tmp_path), 0.3):
      pass
  assert time.monotonic() - t0 >= 0.3 and "not renewed while this run watched it" in caplog.text
  _record(tmp_path, host="elsewhere")
  with pytest.raises(lease_lib.WorkdirBusy, match="on host elsewhere"):
    lease_lib.Lease(str(tmp_path), 0).acquire()  # timeout 0: never by age


def test_renewal_keeps_the_record_fresh(tmp_path):
  held = lease_lib.Lease(str(tmp_path), 0.2)  # renewed every 0.02 s
  held.acquire()
  first = json.loads((tmp_path / lease_lib.LEASE_FILE).read_text())["renewed"]
  time.sleep(0.2)
  assert json.loads((tmp_path / lease_lib.LEASE_FILE).read_text())["renewed"] > first
  held.check()  # still ours
  held.release()


def test_holder_names_live_runs_only(tmp_path):
  """What `study --status` shows as running: a record whose process lives (this host) or renews (another)."""
  assert lease_lib.holder(str(tmp_path)) is None  # no record
  _record(tmp_path)
  assert lease_lib.holder(str(tmp_path))["pid"] == os.getpid()
  _record(tmp_path, pid=_dead_pid())
  assert lease_lib.holder(str(tmp_path)) is None
  _record(tmp_path, host="elsewhere", timeout_seconds=600, renewed=time.time() - 30)
  assert lease_lib.holder(str(tmp_path))["host"] == "elsewhere"
  _record(tmp_path, host="elsewhere", timeout_seconds=600, renewed=time.time() - 900)
  assert lease_lib.holder(str(tmp_path)) is None
  assert not (tmp_path / lease_lib.LOCK_FILE).exists()  # a status display takes no lock
