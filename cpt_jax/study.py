"""Study runner: a grid of pretrain and adapt runs, each one the ordinary train entry point.

`python -m cpt_jax.study --config configs/study_X.py --workdir DIR [--jobs N] [--status]`

A study config (`get_config()`) holds:
  pretrain   a full run config (stage=pretrain); one run per model size, saving at every PTPP stage
  adapt      a full run config (stage=adapt); init_from / init_step are filled in per cell
  sizes      [(label, {config.path: value}), ...] model sizes (overrides of both configs); a dict
             {label: {...}} works when no override key is dotted (ConfigDict rejects dotted keys)
  ptpp       PTPP stages (adaptation starts from the checkpoint at each)
  axes       [(axis name, [(label, {config.path: value}), ...]), ...] the adaptation grid
  replay_tokens  tokens of self-generated replay to write per (size, stage) when a cell sets
                 replay.samples="@generated"; 0 to sample on the fly instead
  seeds          optional [0, 1, 2]: every adaptation cell runs once per seed (`seed` sets data order, replay
                 sampling and any fresh initialization); the label `seed` ("s0", ...) can be used in `exclude`
  pretrain_per_stage  optional bool: one pretraining run per (size, PTPP stage), each with its own schedule
                 ending at that stage (a model trained *to* PTPP P), instead of one run saved at every stage
  exclude        optional [{axis: label, ...}, ...]: grid cells matching every pair of one entry are left out
  wall_hours_budget  optional hours: the wall time the study is sized for on its machine; its report sets the
                 measured and still-to-run hours against it
  first          optional [{axis: label, ...}, ...]: run order: cells matching the first entry, then those
                 matching the second, …, then the rest (the ones the claims need most first, so a study
                 stopped early still has them)
  pretrained     optional {size: workdir of an existing pretraining run} to reuse instead of pretraining:
                 its model must match the size's, its train.save_at_ptpp must cover `ptpp`, and it must
                 be finished (summary.json) or have committed the checkpoint of every stage in `ptpp`
  pretrained_command  optional {size: the command that makes that run}: named when it is missing
  midtrain       optional (label, {config.path: value}): a continued-pretraining phase per (size, PTPP stage),
                 from the stage's checkpoint, on data.base (the pretraining config with these overrides, e.g. copy
                 rows and its own learning rate and token count); the stage's replay and adapt cells start from
                 its end. Cells `DIR/midtrain/<size>_ptpp<P>/`, labelled {"midtrain": label}. The phase keeps
                 the pretraining's schedule, warmup and gradient clipping unless overridden: a copying phase
                 under clipping at 1 learned a quarter of the copying it learned without (docs/results/README.md)
Cells are `DIR/cells/<id>/` with their own config.json and checkpoints: a finished cell (summary.json) is
skipped, an interrupted one resumes, and `DIR/results.csv` collects one row per finished cell. `--restore
docs/results/<study>` first puts back the finished cells a report archived (cpt_jax/study_archive.py), so a study
resumes on a fresh checkout.

Each cell runs in its own process with its output in DIR/logs/; the runner draws the progress (read from the
cells' metrics.jsonl) and logs to DIR/study.log. A SIGTERM/SIGINT to the runner is passed to the running cells
(they checkpoint), no new cell starts, and the runner exits 75 like a preempted run. `--status` prints the
grid's state, or which prerequisite is missing and the command that makes it, and each cell's tokens, FLOPs,
device-hours (`--accelerator h100 --mfu 0.4`) and corpus epochs (cpt_jax/study_cost.py; a study with a run
that reads a corpus more than 4 times is refused).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from cpt_jax import cell_process, console, host_memory, study_archive, study_cost
from cpt_jax import checkpoint as ckpt_lib
from cpt_jax import lease as lease_lib
from cpt_jax.research import report as report_lib
from cpt_jax.study_grid import Cell, MissingPrerequisite, check_reused, expand
from cpt_jax.study_progress import StudyProgress
from cpt_jax.study_results import collect_results

_CHILDREN = cell_process.Children()


def _run_cell(cell: Cell, log_dir: Path) -> int:
  """Runs one cell in its own process (the same entry point a user would call); returns its exit code."""
  cell.workdir.mkdir(parents=True, exist_ok=True)
  log = log_dir / (cell.id.replace("/", "__") + ".log")
  env = dict(os.environ)
  env.setdefault("JAX_COMPILATION_CACHE_DIR", str(log_dir.parent / "jax_cache"))
  if cell.kind == "replay":
    c = cell.config
    cmd = [sys.executable, "-m", "cpt_jax.replay_dataset", "--workdir", c["workdir"], "--out", str(cell.workdir),
           "--tokens", str(c["tokens"]), "--seed", str(c["seed"]), "--step", str(c["step"])]
  else:
    cfg_path = cell.workdir / "cell_config.json"
    cfg_path.write_text(json.dumps(cell.config, indent=2))
    cmd = [sys.executable, "-m", "cpt_jax.train", "--config", f"{_configs_dir()}/from_json.py:{cfg_path}",
           "--workdir", str(cell.workdir)]
  with open(log, "a", encoding="utf-8") as fh:
    fh.write(f"\n$ {' '.join(cmd)}\n")
    fh.flush()
    return _CHILDREN.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)


def _configs_dir() -> str:
  return str(Path(__file__).resolve().parent.parent / "configs")


def run_study(study: ml_collections.ConfigDict, root: Path, jobs: int = 1) -> list[Cell]:
  """Runs every unfinished cell whose dependencies are done, `jobs` at a time; collects results."""
  cells = expand(study, root)  # before anything is written: a missing prerequisite leaves no trace
  check_reused(cells)
  cost = study_cost.estimate(cells)
  study_cost.check_repeats(cost)  # a run reading a corpus > 4 times: refused, named
  root.mkdir(parents=True, exist_ok=True)
  (root / "study_config.json").write_text(study.to_json_best_effort(indent=2))
  _write_cost(cost, root)
  log_dir = root / "logs"
  log_dir.mkdir(exist_ok=True)
  failed: set[str] = set()
  started: set[str] = set()
  t0 = time.time()
  progress = StudyProgress(cells, t0, jobs=jobs)
  _CHILDREN.signal = None
  previous = _CHILDREN.install()
  try:
    _schedule(cells, root, jobs, log_dir, progress, failed, started, t0)
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  progress.close()
  collect_results(cells, root / "results.csv")
  _write_cost(study_cost.estimate(cells), root)  # again: the tokenizers now measure what was estimated before
  record_invocation(root, t0, [c.id for c in cells if c.id in started and c.done], sorted(failed), jobs)
  if _CHILDREN.signal is not None:
    raise cell_process.Stopped(f"stopped by {signal.Signals(_CHILDREN.signal).name}: the running cells "
                               "checkpointed; rerun the same command to resume")
  if failed:
    raise RuntimeError(f"{len(failed)} cells failed or were blocked: {sorted(failed)[:5]}; their logs are in "
                       f"{console.where(log_dir)}; rerun the same command to retry them")
  return cells


def _write_cost(cost: study_cost.StudyCost, root: Path) -> None:
  """DIR/cost.json, which the reports read (corpus sizes and epochs, each cell's FLOPs and done file)."""
  (root / "cost.json").write_text(json.dumps(study_cost.to_json(cost, root), indent=2))


def _schedule(cells: list[Cell], root: Path, jobs: int, log_dir: Path, progress: StudyProgress, failed: set[str],
              started: set[str], t0: float) -> None:
  """Starts each ready cell, `jobs` at a time, until none is left to start (or a signal stops the starting)."""
  by_id = {c.id: c for c in cells}
  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    running: dict[concurrent.futures.Future, Cell] = {}
    while True:
      ready = [c for c in cells if not c.done and c.id not in failed and c not in running.values()
               and all(by_id[n].done for n in c.needs)]
      blocked = [c for c in cells if not c.done and any(n in failed for n in c.needs)]
      for c in blocked:
        failed.add(c.id)
        progress.blocked(c)
      while ready and len(running) < jobs and _CHILDREN.signal is None:
        c = ready.pop(0)
        logging.info("[%s] starting %s (log: %s)", _elapsed(t0), c.id, console.where(_log_path(c, log_dir)))
        started.add(c.id)
        progress.start(c)
        running[pool.submit(_run_cell, c, log_dir)] = c
      if not running:
        break
      done, _ = concurrent.futures.wait(running, timeout=2.0, return_when=concurrent.futures.FIRST_COMPLETED)
      progress.poll()
      for fut in done:
        c = running.pop(fut)
        rc = fut.result()
        ok = rc == 0 and c.done
        progress.finish(c, ok)
        if not ok and _CHILDREN.signal is not None and rc == 75:  # stopped with the runner: it resumes
          logging.info("[%s] %s stopped and checkpointed", _elapsed(t0), c.id)
        elif not ok:
          failed.add(c.id)
          logging.error("[%s] %s failed (exit %d); see %s", _elapsed(t0), c.id, rc,
                        console.where(_log_path(c, log_dir)))
        else:
          logging.info("[%s] finished %s; %s", _elapsed(t0), c.id, progress.outlook())
          if c.kind == "adapt":  # a study stopped part-way still has every finished cell in results.csv
            collect_results(cells, root / "results.csv")
          record_invocation(root, t0, [x.id for x in cells if x.id in started and x.done], sorted(failed), jobs)


def record_invocation(root: Path, t0: float, cells_run: list[str], failed: list[str], jobs: int) -> None:
  """This invocation's line of DIR/invocations.jsonl (the runner's timing, for reports), rewritten after every
  finished cell, so that an invocation stopped part-way keeps the time and cells it got through."""
  path = root / "invocations.jsonl"
  lines = [x for x in (path.read_text(encoding="utf-8").splitlines() if path.exists() else []) if x.strip()]
  others = [x for x in lines if json.loads(x).get("started") != t0]
  now = time.time()
  mine = {"started": t0, "finished": now, "seconds": now - t0, "cells_run": cells_run, "failed": failed,
          "jobs": jobs, "argv": sys.argv}
  tmp = path.with_suffix(".tmp")
  tmp.write_text("".join(x + "\n" for x in others + [json.dumps(mine)]), encoding="utf-8")
  os.replace(tmp, path)


def _log_path(cell: Cell, log_dir: Path) -> Path:
  return log_dir / (cell.id.replace("/", "__") + ".log")


def _elapsed(t0: float) -> str:
  return f"{(time.time() - t0) / 60:5.1f} min"


def progress_table(cells: list[Cell], failed=frozenset(), running=frozenset(), notes=None) -> str:
  counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
  lines = []
  for c in cells:
    state = "done" if c.done else "running" if c.id in running else "failed" if c.id in failed else "pending"
    counts[state] += 1
    note = (notes or {}).get(c.id)
    lines.append(f"  {state:8s} {c.id}" + (f"  ({note})" if note else ""))
  head = "study: " + ", ".join(f"{v} {k}" for k, v in counts.items())
  return "\n".join([head] + lines)


def status(study: ml_collections.ConfigDict, root: Path, accelerator: str = "", mfu: float | None = None) -> str:
  """The grid's state and each cell's cost (tokens, FLOPs, device-hours on `accelerator` at `mfu`, corpus epochs:
  cpt_jax/study_cost.py), or the prerequisite that is missing and the command that makes it."""
  try:
    cells = expand(study, root)
    check_reused(cells)
  except MissingPrerequisite as e:
    return f"study: waiting for a prerequisite\n  missing  {e}"
  cost = study_cost.estimate(cells)
  running = {c.id for c in cells if not c.done and lease_lib.holder(str(c.workdir))}  # by another runner
  steps = {cc.cell.id: cc.steps for cc in cost.cells}
  notes = {c.id: f"step {saved:,} of {steps[c.id]:,} saved" for c in cells
           if not c.done and (saved := max(ckpt_lib.committed_steps(str(c.workdir / "checkpoints")), default=0))
           and steps.get(c.id)}
  return progress_table(cells, running=running, notes=notes) + "\n" + study_cost.table(
      cost, accelerator or study_cost.default_accelerator(study), mfu)


_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file with get_config().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory.")
_JOBS = flags.DEFINE_integer("jobs", 1, "Cells run in parallel (processes).")
_STATUS = flags.DEFINE_bool("status", False, "Only print the grid's state (or the missing prerequisite).")
_ACCELERATOR = flags.DEFINE_string(
    "accelerator", "", f"--status: device-hours on one of {', '.join(study_cost.ACCELERATORS)} (empty: cpu for a "
    "float32 study, h100 for a bfloat16 one; cpu uses the measured wall time of finished cells).")
_MFU = flags.DEFINE_float("mfu", 0.0, "--status: the model FLOP utilization assumed for device-hours (0: 0.4 on an "
                          "accelerator, 0.07 of the measured matmul peak on the CPU).")
_RESTORE = flags.DEFINE_string(
    "restore", "", "Before running: put back the finished cells archived in this directory (the cells.jsonl "
    "tools/report.py writes beside a report's results.csv, e.g. docs/results/study_babi) where the grid still "
    "configures them the same way.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Also show the libraries' INFO lines (DIR/study.log has them all).")


def main(argv):
  del argv
  if _CONFIG.value is None or not _WORKDIR.value:
    console.fail("--config and --workdir are required, e.g. --config configs/quickstart.py --workdir runs/quickstart")
  root = Path(_WORKDIR.value)
  console.setup_logging(str(root), "study.log", _VERBOSE.value)
  try:
    if _RESTORE.value:
      restored = study_archive.restore(root, expand(_CONFIG.value, root), Path(_RESTORE.value))
      logging.info("restored %d finished cells from %s", len(restored), _RESTORE.value)
    if _STATUS.value:
      print(status(_CONFIG.value, root, _ACCELERATOR.value, _MFU.value))
      return
    run_study(_CONFIG.value, root, _JOBS.value)
  except ValueError as e:  # a bad override, a missing prerequisite: before any cell ran
    console.fail(str(e))
  except cell_process.Stopped as e:  # SIGTERM/SIGINT: the cells checkpointed (exit 75, as a preempted run)
    logging.warning("%s", e)
    sys.exit(75)
  except RuntimeError as e:  # cells failed: their logs say why
    console.fail(str(e), 1)
  report = _CONFIG.value.get("report", "")
  results = console.where(root / "results.csv")
  if report in report_lib.REPORTS:
    print(report_lib.REPORTS[report](root))
    print(f"wrote {console.where(root / (report + '.md'))} (table), {console.where(root / (report + '.png'))} "
          f"(plot) and {results}")
  elif report:  # a seed study: a draft under DIR/report/; tools/report.py DIR writes docs/results/
    draft = report_lib.study_report(root, root / "report")
    print(f"compared with {report_lib.PAPERS.get(report, 'its seed paper')}: report draft {console.where(draft)} "
          f"from {results}")
  else:
    print(f"wrote {results}")


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()  # the cells, run as child processes, inherit it
  app.run(main, flags_parser=console.parse_flags)
