"""What a person sees: a quiet run that ends with its result, one `error:` line (exit 2) for every mistake
in every command line, log lines that are the project's own, the study's progress, charts with baselines."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cpt_jax import console, study_grid, study_progress, study_results

sys.path.insert(0, str(Path(__file__).parent))
import cli_utils  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = Path(cli_utils.REPO)


def test_train_is_quiet_and_ends_with_its_result(corpus_dir, tmp_path):
  env = cli_utils.cli_env(tmp_path, corpus_dir)
  r = cli_utils.run_cli(env, tmp_path / "w")
  assert r.returncode == 0, r.stderr[-3000:]
  lines = (r.stdout + r.stderr).splitlines()
  assert len(lines) <= 15, "\n".join(lines)
  assert r.stdout.splitlines()[0] == "pretrain finished", r.stdout
  for row in ("base loss", "tokens", "wall time"):
    assert re.search(rf"^  {row} +\S", r.stdout, re.M), (row, r.stdout)
  assert re.search(rf"^  workdir +{re.escape(str(tmp_path / 'w'))}$", r.stdout, re.M), r.stdout
  log = (tmp_path / "w" / "train.log").read_text()
  assert len(log.splitlines()) > len(lines) and "orbax" in log.lower()  # the file has the libraries' lines
  assert "orbax" not in r.stderr.lower() and "absl" not in r.stderr.lower(), r.stderr


def test_dry_run_of_an_adapt_run_names_init_froms_model(corpus_dir, pretrained, tmp_path):
  env = cli_utils.cli_env(tmp_path, corpus_dir, tokenizer=Path(pretrained[0]) / "tokenizer.model")
  r = cli_utils.run_cli(env, tmp_path / "w", "--config.stage=adapt", f"--config.init_from={pretrained[0]}",
                        "--config.data.target.kind=babi",
                        "--config.model.d_model=32", "--config.model.num_heads=2", "--dry_run")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "dry run: an adapt run of a 2-layer d=64 model" in r.stdout, r.stdout  # init_from's width, not 32
  assert not (tmp_path / "w").exists()


def test_only_this_packages_info_lines_reach_the_console(tmp_path):
  """By the package's own directory: a library in a virtualenv inside a clone named cpt_jax/ is not ours."""
  def record(name, path, level=logging.INFO):
    return logging.LogRecord(name, level, path, 1, "m", None, None)

  handler = console._Console(verbose=False)  # pylint: disable=protected-access
  assert handler.filter(record("root", console.PACKAGE_DIR + "loop.py"))
  assert handler.filter(record("cpt_jax.data.corpora", "/elsewhere/x.py"))
  clone_venv = str(Path(console.PACKAGE_DIR).parent / ".venv/lib/python3.11/site-packages/orbax/checkpoint/x.py")
  assert not handler.filter(record("absl", clone_venv))
  assert not handler.filter(record("root", "/home/u/cpt_jax/.venv/lib/site-packages/tensorflow_datasets/a.py"))
  assert handler.filter(record("absl", clone_venv, logging.WARNING))
  assert console._Console(verbose=True).filter(record("absl", clone_venv))  # pylint: disable=protected-access
  run_log = console._RunLog(str(tmp_path / "later"), "train.log")  # pylint: disable=protected-access
  run_log.emit(record("absl", clone_venv))  # held until the run has created its directory
  assert not (tmp_path / "later").exists()
  (tmp_path / "later").mkdir()
  run_log.emit(record("root", console.PACKAGE_DIR + "loop.py"))
  run_log.close()
  assert len((tmp_path / "later" / "train.log").read_text().splitlines()) == 2


def test_setup_replaces_the_stderr_handlers_libraries_add(tmp_path):
  """Grain's import adds a StreamHandler to the root logger; left there, it would print every library line."""
  root = logging.getLogger()
  before, level = list(root.handlers), root.level
  stray = logging.StreamHandler(sys.stderr)
  root.addHandler(stray)
  try:
    run_log = console.setup_logging(str(tmp_path), "x.log")
    assert stray not in root.handlers and run_log in root.handlers
    assert [h for h in root.handlers if h not in before] == [h for h in root.handlers if isinstance(
        h, (console._Console, console._RunLog))]  # pylint: disable=protected-access
  finally:
    for h in [h for h in root.handlers if h not in before]:
      root.removeHandler(h)
    root.setLevel(level)
    logging.captureWarnings(False)


def _fake_results(path: Path, columns: list[str]) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(columns)
    w.writerow([1.0] * len(columns))
  return path


def test_every_command_line_error_is_one_line(tmp_path):
  """Bad paths, bad fields and missing prerequisites of study and the tools: exit 2, one `error:` line, no
  traceback (train's own are in test_bad_inputs.py); --status names a missing prerequisite's command."""
  py, quickstart = sys.executable, str(REPO / "configs" / "quickstart.py")
  reusing = str(REPO / "tests" / "configs" / "study_reusing_pretraining.py")  # its pretraining run is missing
  bad_csv = _fake_results(tmp_path / "bad.csv", ["params", "ptpp", "target_loss"])
  study_cmd = [py, "-m", "cpt_jax.study", "--workdir", str(tmp_path / "s")]
  make_pretrain = "python -m cpt_jax.train --config configs/pretrain_tiny.py --workdir runs/pretrain_missing"
  cases = [  # (id, argv, key words of the error)
      ("study_config_missing", study_cmd + ["--config", "configs/nope.py"], ["configs/nope.py", "does not exist"]),
      ("study_field_typo", study_cmd + ["--config", quickstart, "--config.adapt.opt.lrr=1"], ["lrr"]),
      ("study_shared_pieces", study_cmd + ["--config", str(REPO / "configs" / "study_common.py")],
       ["holds the pieces the study configs share", "study_ptpp.py"]),
      ("study_prerequisite", study_cmd + ["--config", reusing],
       ["does not exist yet", make_pretrain]),
      ("fit_laws_no_csv", [py, "tools/fit_laws.py", str(tmp_path / "no.csv"), "--fit-ptpp", "1", "--test-ptpp", "2"],
       ["no.csv is not a file"]),
      ("fit_laws_columns", [py, "tools/fit_laws.py", str(bad_csv), "--fit-ptpp", "1", "--test-ptpp", "2"],
       ["lacks the columns", "adapt_tokens or atpp", "replay_ratio"]),
      ("fit_laws_field", [py, "tools/fit_laws.py", str(bad_csv), "--fit-ptpp", "1"], ["--test-ptpp", "--help"]),
      ("plan_no_csv", [py, "tools/plan.py", str(tmp_path / "no.csv"), "--params", "1e6", "--ptpp", "4",
                       "--max-target-loss", "3", "--max-forgetting", "0.1", "--max-atpp", "1"],
       ["no.csv is not a file"]),
      ("plan_field", [py, "tools/plan.py", str(bad_csv), "--params", "1e6", "--ptpp", "4", "--max-target-loss", "3",
                      "--max-forgetting", "0.1", "--max-atpp", "1", "--replay-ratio", "0.1"], ["--replay-ratio"]),
      ("report_no_study", [py, "tools/report.py", str(tmp_path / "nothing")], ["study_config.json does not exist",
                                                                                  "python -m cpt_jax.study"]),
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  with ThreadPoolExecutor(2) as pool:
    results = list(pool.map(lambda c: subprocess.run(c[1], cwd=tmp_path if c[0].startswith("study") else REPO,
                                                     capture_output=True, text=True, timeout=300, check=False,
                                                     env=env),
                            cases + [("study_status", study_cmd + ["--config", reusing, "--status"], [])]))
  status = results.pop()
  for (name, _, words), r in zip(cases, results):
    errors = cli_utils.error_lines(r.stderr)
    assert r.returncode == 2, (name, r.returncode, r.stderr[-3000:])
    assert len(errors) == 1 and len(r.stderr.strip().splitlines()) == 1, (name, r.stderr[-3000:])
    for w in words:
      assert w in errors[0], (name, w, errors[0])
  assert status.returncode == 0 and status.stderr == "", status.stderr
  assert status.stdout.startswith("study: waiting for a prerequisite\n  missing  ")
  assert make_pretrain in status.stdout
  assert not (tmp_path / "s").exists()  # neither run nor --status wrote anything


def test_study_progress_reads_running_cells(tmp_path):
  """The runner's bar and ETA come from the cells' metrics.jsonl while they run in their subprocesses."""
  def cell(i, done):
    wd = tmp_path / f"c{i}"
    wd.mkdir()
    if done:
      (wd / "summary.json").write_text("{}")
    return study_grid.Cell(f"replay/c{i}", "replay", wd, {"tokens": 1000}, {}, [])

  cells = [cell(0, True), cell(1, False), cell(2, False)]
  (cells[0].workdir / "self_replay/1.0.0").mkdir(parents=True)
  (cells[0].workdir / "self_replay/1.0.0/dataset_info.json").write_text("{}")
  progress = study_progress.StudyProgress(cells, time.time() - 10, terminal=False)
  progress.start(cells[1])
  with open(cells[1].workdir / "metrics.jsonl", "w") as f:
    f.write(json.dumps({"step": 1, "tokens": 250, "train/loss": 4.5}) + "\n")
    f.write(json.dumps({"step": 2, "tokens": 500, "eval/base/loss": 4.0}) + "\n")
  assert study_progress.cell_progress(cells[1].workdir) == (500, 4.5)
  progress.poll()
  assert progress.tokens == 1500
  outlook = progress.outlook()  # 500 tokens in 10 s of this invocation, 1500 left: about 30 s
  assert outlook.startswith("1 of 3 cells done, about ") and outlook.endswith(" s left"), outlook
  assert 25 <= int(outlook.split("about ")[1].split(" ")[0]) <= 35
  with open(cells[1].workdir / "metrics.jsonl", "a") as f:  # it finishes: 100 tokens/s over its steps
    f.write(json.dumps({"step": 4, "tokens": 1000, "train/tokens_per_sec": 100.0}) + "\n")
  (cells[1].workdir / "self_replay/1.0.0").mkdir(parents=True)
  (cells[1].workdir / "self_replay/1.0.0/dataset_info.json").write_text("{}")
  progress.finish(cells[1], True)
  assert progress.outlook() == "2 of 3 cells done, about 10 s left"  # no overhead measured, 1000 tokens at 100/s
  progress.close()


@pytest.mark.parametrize("jobs", [1, 2])
def test_study_eta_charges_each_kind_its_own_overhead(tmp_path, monkeypatch, jobs):
  """A pretraining run's long overhead (tokenizer, corpus packing) is not charged to the adaptation cells; with
  two jobs two cells run at once."""
  monkeypatch.setattr(study_progress, "cell_tokens", lambda c: c.config["tokens"])
  cells = [study_grid.Cell(f"{kind}/c{i}", kind, tmp_path / f"c{i}", {"tokens": 1000}, {}, [])
           for i, kind in enumerate(["pretrain", "adapt", "adapt"])]
  progress = study_progress.StudyProgress(cells, time.time(), terminal=False, jobs=jobs)

  def run(cell, seconds):
    cell.workdir.mkdir()
    progress.start(cell)
    with open(cell.workdir / "metrics.jsonl", "w") as f:  # 100 tokens/s over its steps: 10 s of its wall time
      f.write(json.dumps({"step": 4, "tokens": 1000, "train/tokens_per_sec": 100.0}) + "\n")
    running, bar, _ = progress._running[cell.id]  # pylint: disable=protected-access
    progress._running[cell.id] = (running, bar, time.time() - seconds)  # pylint: disable=protected-access
    progress.finish(cell, True)

  run(cells[0], 600)  # 590 s of overhead
  # two adaptation cells of 10 s each (not 2 × (590 + 10) s), one after the other or side by side
  assert progress.outlook() == f"1 of 3 cells done, about {20 // jobs} s left"
  run(cells[1], 40)  # an adaptation cell: 30 s of overhead; the last one takes as long with two jobs
  left = progress.seconds_left()
  assert 39 <= left <= 41, left
  progress.close()


def test_accuracy_chart_shows_its_baselines(tmp_path):
  """The quickstart's bAbI panel: bars with intervals, the majority baseline, the value before adapting, n."""
  from cpt_jax.research import report  # pylint: disable=g-import-not-at-top  # matplotlib: only this test
  from cpt_jax.research.report import common  # pylint: disable=g-import-not-at-top
  rows = [{"axis_method": m, "babi_accuracy": a, "babi_examples": 200.0, "babi_majority_baseline": 0.21,
           "babi_accuracy_before": 0.05, "forgetting": f, "target_loss": 2.4, "base_loss": 6.0,
           "base_loss_before": 5.7, "target_loss_before": 7.8, "replay_ratio": 0.25, "wall_seconds": 60.0}
          for m, a, f in (("no_replay", 0.12, 3.7), ("real_ntp", 0.13, 0.2), ("self_kl", 0.15, 0.16))]
  (tmp_path / "study_config.json").write_text(json.dumps({"report": "quickstart"}))
  with open(tmp_path / "results.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=study_results.RESULT_COLUMNS + ["axis_method"], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  text = report.quickstart(tmp_path)
  assert (tmp_path / "quickstart.png").exists()
  assert "0.210 (majority baseline)" in text and "0.050 before adaptation" in text and "200 evaluation" in text
  assert "Marek et al. (arXiv 2605.26097)" in text
  plt = common._plt()  # pylint: disable=protected-access
  fig, ax = plt.subplots()
  base = common.accuracy_baselines(report.read_results(tmp_path / "results.csv"))
  base.bars(ax, ["a", "b", "c"], report.read_results(tmp_path / "results.csv"))
  labels = ax.get_legend_handles_labels()[1]
  assert {"majority answer (0.210)", "before adaptation (0.050)", "after adaptation (95 % interval)"} <= set(labels)
  assert "n = 200" in ax.get_title()
  plt.close(fig)


@pytest.mark.parametrize("tool", ["fit_laws", "plan"])
def test_tools_help_has_an_example_and_the_columns(tool):
  r = subprocess.run([sys.executable, f"tools/{tool}.py", "--help"], cwd=REPO, capture_output=True, text=True,
                     timeout=120, check=True)
  assert f"python tools/{tool}.py docs/results/study_ptpp/results.csv" in r.stdout
  for column in ("params", "ptpp", "adapt_tokens", "replay_ratio", "target_loss"):
    assert column in r.stdout


def test_help_exits_zero():
  r = subprocess.run([sys.executable, "-m", "cpt_jax.train", "--help"], cwd=REPO, capture_output=True, text=True,
                     timeout=120, check=False)
  assert r.returncode == 0 and "--workdir" in r.stdout and "dry_run" in r.stdout, (r.returncode, r.stdout[-500:])
