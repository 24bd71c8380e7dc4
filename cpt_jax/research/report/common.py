"""What every report shares: results.csv reading, markdown tables, seed-claim verdicts, provenance, plots."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import itertools
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cpt_jax.console import wilson_interval

# The papers whose claims the studies check: the study's `report` kind → who and where.
PAPERS = {"babi": "Spiegelhalter et al. (arXiv 2510.11842)", "forgetting": "Marek et al. (arXiv 2605.26097)",
          "ptpp": "Goffinet et al. (arXiv 2510.23198)"}


def read_results(path: str | Path) -> list[dict[str, Any]]:
  rows = []
  with open(path, newline="", encoding="utf-8") as f:
    for row in csv.DictReader(f):
      rows.append({k: _number(v) for k, v in row.items()})
  return rows


def _number(v: str):
  try:
    return float(v) if v not in ("", "None") else None
  except ValueError:
    return v


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
  """columns: (header, key, format)."""
  head = "| " + " | ".join(h for h, _, _ in columns) + " |"
  sep = "|" + "|".join("---" for _ in columns) + "|"
  body = []
  for r in rows:
    cells = []
    for _, key, fmt in columns:
      v = r.get(key)
      cells.append("–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt))
    body.append("| " + " | ".join(cells) + " |")
  return "\n".join([head, sep] + body)


def _mean_of(rows, key) -> float | None:
  values = [r[key] for r in rows if isinstance(r.get(key), float) and not math.isnan(r[key])]
  return sum(values) / len(values) if values else None


@dataclasses.dataclass
class AccuracyBaselines:
  """What a bAbI accuracy must be read against: the majority-answer baseline (always the task's most frequent
  answer, averaged over tasks), the start model's accuracy before adapting, and the number of evaluation
  examples behind each value (for 95 % Wilson intervals). None where results.csv did not record it."""
  majority: float | None
  before: float | None
  examples: int | None

  def interval(self, row: dict[str, Any], pooled: int = 1) -> tuple[float, float] | None:
    n = row.get("babi_examples") or self.examples
    acc = row.get("babi_accuracy")
    return wilson_interval(acc, int(n) * pooled) if n and acc is not None else None

  def sentence(self) -> str:
    parts = [f"{self.examples} evaluation examples per value (intervals: 95 % Wilson)" if self.examples else
             "number of evaluation examples not recorded"]
    parts.append(f"always giving each task's most frequent answer scores {self.majority:.3f} (majority baseline)"
                 if self.majority is not None else "majority baseline not recorded")
    parts.append(f"the start model scored {self.before:.3f} before adaptation" if self.before is not None else
                 "accuracy before adaptation not recorded")
    return "; ".join(parts) + "."

  def lines(self, ax, label_suffix: str = "", color: str | None = None) -> None:
    """The two reference levels as horizontal lines, labelled for the legend."""
    if self.majority is not None:
      ax.axhline(self.majority, color=color or "tab:red", ls="--", lw=1.2,
                 label=f"majority answer{label_suffix} ({self.majority:.3f})")
    if self.before is not None:
      ax.axhline(self.before, color=color or "0.3", ls=":", lw=1.2,
                 label=f"before adaptation{label_suffix} ({self.before:.3f})")

  def bars(self, ax, labels: list[str], rows: list[dict[str, Any]]) -> None:
    """Accuracy bars with their 95 % intervals, over the majority baseline and the value before adapting."""
    acc = [r.get("babi_accuracy") or 0.0 for r in rows]
    ci = [self.interval(r) for r in rows]
    err = np.array([[a - c[0], c[1] - a] if c else [0.0, 0.0] for a, c in zip(acc, ci)]).T
    ax.bar(labels, acc, yerr=err if any(ci) else None, capsize=6, color="tab:blue", alpha=0.8,
           label="after adaptation (95 % interval)")
    self.lines(ax)
    ax.set_ylim(0, max([0.3] + [c[1] * 1.15 for c in ci if c] + [self.majority * 1.3 if self.majority else 0]))
    ax.set_title(f"bAbI accuracy, n = {self.examples} examples each" if self.examples else
                 "bAbI accuracy (n not recorded)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")


def _mixed_bases(rows: list[dict[str, Any]]) -> list[str]:
  """A line per stage whose cells did not all start from the same model (their base loss before adapting
  differs): cells restored from an archive (cpt_jax/study_archive.py) over a base that was pretrained again and
  came out different."""
  bases: dict[tuple, set] = {}
  for r in rows:
    if isinstance(r.get("base_loss_before"), float) and not math.isnan(r["base_loss_before"]):
      bases.setdefault((r.get("size"), r.get("ptpp")), set()).add(round(r["base_loss_before"], 6))
  label = lambda p: f"{p:g}" if isinstance(p, float) else p
  return [f"- **the cells of {size} at PTPP {label(ptpp)} did not all start from the same base**: base loss before "
          f"adapting {', '.join(f'{x:.6f}' for x in sorted(xs))}; cells restored from an archive ran on a base "
          "pretrained again that came out different; compare them with care"
          for (size, ptpp), xs in sorted(bases.items(), key=str) if len(xs) > 1]


def accuracy_baselines(rows: list[dict[str, Any]]) -> AccuracyBaselines:
  """The baselines of rows evaluated on the same bAbI examples (one study variant)."""
  n = _mean_of(rows, "babi_examples")
  return AccuracyBaselines(_mean_of(rows, "babi_majority_baseline"), _mean_of(rows, "babi_accuracy_before"),
                           int(n) if n else None)


@dataclasses.dataclass
class Claim:
  """One seed claim, what our runs measured, and the verdict (True, False, or None: not testable here)."""
  claim: str
  measured: str
  reproduced: bool | None

  def row(self) -> str:
    verdict = {True: "**yes**", False: "**no**", None: "inconclusive"}[self.reproduced]
    return f"| {self.claim} | {self.measured} | {verdict} |"


@dataclasses.dataclass
class Study:
  """What a study's report function gets: its rows, settings, and where to put figures."""
  root: Path
  name: str
  rows: list[dict[str, Any]]
  config: dict[str, Any]
  fig_dir: Path
  figures: list[str] = dataclasses.field(default_factory=list)

  @property
  def claims_cfg(self) -> dict[str, Any]:
    return self.config.get("claims", {}) or {}

  def figure(self, fig, name: str, caption: str) -> str:
    self.fig_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(self.fig_dir / name, dpi=110)
    _plt().close(fig)
    self.figures.append(name)
    return f"![{caption}]({self.fig_dir.name}/{name})\n\n*{caption}*\n"


def matches_any(labels: dict, entries) -> bool:
  """Whether some {axis: label, ...} entry of `entries` (a study's exclude / first) agrees with every pair."""
  return any(all(labels.get(k) == v for k, v in entry.items()) for entry in entries or [])


def planned_cells(config: dict[str, Any]) -> int:
  """Grid cells a study plans (seeds not counted): the product of its axes' labels, less the `exclude`d ones."""
  names = [name for name, _ in config.get("axes", [])]
  combos = itertools.product(*[[label for label, _ in values] for _, values in config.get("axes", [])])
  return sum(not matches_any(dict(zip(names, combo)), config.get("exclude")) for combo in combos)


def _plt():
  import matplotlib  # ~0.6 s to import; only figures need it, and tables are made without it
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # after choosing the headless backend
  return plt


def machine() -> dict[str, Any]:
  model = platform.processor() or ""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  return {"cpu": model or "unknown", "cores": usable, "system": f"{platform.system()} {platform.machine()}"}


def _utc(t: float) -> str:
  return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def provenance(root: Path, config: dict[str, Any], rows) -> str:
  """Which runs made the report: commands, dates, wall time of the runner and of the cells; the machine."""
  lines = []
  inv = []
  if (root / "invocations.jsonl").exists():
    inv = [json.loads(x) for x in (root / "invocations.jsonl").read_text().splitlines() if x.strip()]
  for i in inv:
    argv = " ".join(["python -m cpt_jax.study"] + i["argv"][1:])
    n = len(i["cells_run"])
    lines.append(f"- `{argv}`: {_utc(i['started'])} → {_utc(i['finished'])}, {i['seconds'] / 60:.1f} min, "
                 f"{n} cell{'' if n == 1 else 's'} run" + (f", {len(i['failed'])} failed" if i["failed"] else ""))
  runner = sum(i["seconds"] for i in inv)
  jobs = max([i.get("jobs", 1) for i in inv], default=1)
  recorded = {c.split("/", 1)[-1] for i in inv for c in i["cells_run"]}
  unrecorded = [r for r in rows if r.get("cell") not in recorded]
  if unrecorded:
    lines.append(f"- {len(unrecorded)} of the {len(rows)} adaptation runs finished in invocations stopped before they "
                 "recorded themselves (the runner then wrote its timing only at the end); their own training time is "
                 f"{sum(r['wall_seconds'] or 0 for r in unrecorded) / 60:.1f} min (results.csv `wall_seconds`)")
  cells = sum(r["wall_seconds"] or 0 for r in rows)
  untimed = sum(1 for r in rows if not r.get("wall_seconds"))
  pre_lines = []
  for size, path in (config.get("pretrained") or {}).items():
    run = Path(path) if Path(path).is_absolute() else Path.cwd() / path
    made = "made by `{}`".format((config.get("pretrained_command") or {}).get(
        size, f"python -m cpt_jax.train --config configs/from_json.py:{path}/config.json --workdir {path}"))
    if (run / "summary.json").exists():
      s = json.loads((run / "summary.json").read_text())
      pre_lines.append(f"- reused pretraining run `{path}` (size {size}): {s['params']:,} parameters, "
                       f"{s['tokens']:,} tokens (PTPP {s['ptpp']:.3g}), {s['wall_seconds'] / 60:.1f} min, {made}")
    elif (run / "config.json").exists():  # stopped once it had saved the study's stages
      steps = sorted(int(d.name) for d in (run / "checkpoints").iterdir() if d.name.isdigit())
      cfg = json.loads((run / "config.json").read_text())
      tokens = steps[-1] * cfg["data"]["batch_size"] * cfg["model"]["max_len"]
      wall = max((run / "checkpoints" / str(x)).stat().st_mtime for x in steps) - (run / "config.json").stat().st_mtime
      pre_lines.append(f"- reused pretraining run `{path}` (size {size}), {made}; its schedule runs to PTPP "
                       f"{cfg['train']['ptpp']:g} (saving at {cfg['train']['save_at_ptpp']}), stopped after saving the "
                       f"stages this study needs: checkpoints at steps {', '.join(map(str, steps))} "
                       f"({tokens:,} tokens), {wall / 60:.1f} min of wall time (shared by the three studies)")
  for run in sorted((root / "pretrain").glob("*/summary.json")) if (root / "pretrain").is_dir() else []:
    s = json.loads(run.read_text())
    pre_lines.append(f"- pretraining run `pretrain/{run.parent.name}`: {s['params']:,} parameters, {s['tokens']:,} "
                     f"tokens (PTPP {s['ptpp']:.3g}), {s['wall_seconds'] / 60:.1f} min")
  for run in sorted((root / "midtrain").glob("*/summary.json")) if (root / "midtrain").is_dir() else []:
    s, cfg = json.loads(run.read_text()), json.loads((run.parent / "config.json").read_text())
    pre_lines.append(f"- continued pretraining `midtrain/{run.parent.name}` from its stage's checkpoint: "
                     f"{s['tokens']:,} tokens, copy rows {cfg['data'].get('copy_share', 0):g} of each batch, lr "
                     f"{cfg['opt']['lr']:g}, {s['wall_seconds'] / 60:.1f} min")
  reused_note = "; the reused pretraining is extra" if config.get("pretrained") else ", its pretraining included"
  pre_lines += _mixed_bases(rows)
  m = machine()
  return "\n".join(
      ["## Runs", ""] + lines + pre_lines + corpus_epochs(root) + [
          "",
          f"Machine: {m['cores']} CPU cores ({m['cpu']}), {m['system']}, CPU only (JAX on CPU).",
          f"Wall time: {runner / 60:.1f} min for the study runner (all invocations above{reused_note}); the "
          f"{len(rows) - untimed} adaptation cells' own wall times (results.csv `wall_seconds`) sum to "
          f"{cells / 60:.1f} min" + (f", with up to {jobs} cells running at a time" if jobs > 1 else "")
          + (f"; {untimed} cells have no recorded wall time (their summary.json says why)." if untimed else ".")]
      + _hours_left(root, config, runner)
      + [""])


def _hours_left(root: Path, config: dict[str, Any], runner_seconds: float) -> list[str]:
  """The runs still to run and their hours at the FLOP rate the finished runs of their kind achieved, set against
  the study's wall_hours_budget: an unfinished study's report says what finishing it takes.

  A finished run's rate counts the runs that shared the cores with it: its FLOPs over its wall time ÷ the `jobs`
  of the invocation that ran it (two bAbI cells side by side each run at 0.6× the speed of one alone, together
  at 1.2×). The rate of a kind with no finished run is the pooled rate. Sampling runs (self-generated replay)
  are left out: their speed per FLOP is not a training run's."""
  try:
    cells = json.loads((root / "cost.json").read_text())["cells"]
    assert all("done_file" in c for c in cells)
  except (OSError, ValueError, KeyError, AssertionError):
    return ["Still to run: not recorded (cost.json predates it; the study command rewrites it)."]
  jobs = {}
  for line in (root / "invocations.jsonl").read_text().splitlines() if (root / "invocations.jsonl").exists() else []:
    inv = json.loads(line) if line.strip() else {}
    jobs.update({c: max(1, inv.get("jobs", 1)) for c in inv.get("cells_run", [])})
  cells = [c for c in cells if c["done_file"] and c["flops"] and c["kind"] != "replay"]
  pending, flops, seconds = [], {}, {}  # kind → finished runs' FLOPs and wall seconds per job slot
  for c in cells:
    marker = root / c["done_file"]
    wall = json.loads(marker.read_text()).get("wall_seconds") if marker.exists() else None
    if not marker.exists():
      pending.append(c)
    elif wall:
      flops[c["kind"]] = flops.get(c["kind"], 0.0) + c["flops"]
      seconds[c["kind"]] = seconds.get(c["kind"], 0.0) + wall / jobs.get(c["cell"], 1)
  if not flops:
    return []
  pooled = sum(flops.values()) / sum(seconds.values())
  left = sum(c["flops"] / (flops[c["kind"]] / seconds[c["kind"]] if c["kind"] in flops else pooled)
             for c in pending)
  lines = []
  if pending:
    rates = ", ".join(f"{k} {flops[k] / seconds[k] / 1e9:.3g}" for k in sorted(flops))
    lines.append(f"Still to run: {len(pending)} of {len(cells)} training runs "
                 f"({sum(c['flops'] for c in pending):.3g} FLOPs), {left / 3600:.1f} h at the GFLOP/s the finished "
                 f"runs of their kind achieved ({rates}; their wall time, compilation and evaluation included, "
                 "÷ the runs that shared the machine with them).")
  budget = config.get("wall_hours_budget")
  if budget:
    total = (runner_seconds + left) / 3600
    verdict = (f"over it by {total - budget:.1f} h" if total > budget
               else f"within it ({budget - total:.1f} h to spare)")
    so_far = f"{runner_seconds / 3600:.1f} h measured" + (f" and {left / 3600:.1f} h still to run" if pending else "")
    lines.append(f"Budget: the study is sized for {budget:g} h of wall time on its machine; {so_far} make "
                 f"{total:.1f} h, {verdict}.")
  return lines


def corpus_epochs(root: Path) -> list[str]:
  """How many times each stage read each corpus (tokens read ÷ corpus size), from DIR/cost.json (written by
  the runner): the most of any run of the stage, per corpus."""
  path = root / "cost.json"
  if not path.exists():
    return ["", "Corpus epochs: not recorded (DIR/cost.json is written by the runner; rerun the study command)."]
  cost = json.loads(path.read_text())
  stages: dict[str, dict[str, float]] = {}
  for c in cost["cells"]:
    if c["kind"] == "replay":
      continue
    stage = c["cell"] if c["kind"] in ("pretrain", "midtrain") else "adaptation runs"
    for corpus, e in c["epochs"].items():
      if e is not None:
        stages.setdefault(stage, {})[corpus] = max(e, stages.get(stage, {}).get(corpus, 0.0))
  sizes = "; ".join(f"{c['label']} {c['tokens'] / 1e6:.2f}M tokens ({c['how']})" for c in cost["corpora"].values()
                    if c["tokens"])
  lines = ["", "Corpus epochs (tokens read ÷ corpus size; for the adaptation runs the most any run read):"]
  lines += [f"- {stage}: " + ", ".join(f"{corpus} {e:.2f}" for corpus, e in sorted(per.items()))
            for stage, per in stages.items()]
  return lines + [f"- corpus sizes: {sizes}"]


def _f(v, fmt=".3f") -> str:
  return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _pivot_table(rows, row_key, col_key, cell: Callable[[dict], str], row_fmt=str, col_fmt=str) -> str:
  rks = sorted({r[row_key] for r in rows})
  cks = sorted({r[col_key] for r in rows})
  by = {(r[row_key], r[col_key]): r for r in rows}
  head = f"| {row_key} \\ {col_key} | " + " | ".join(col_fmt(c) for c in cks) + " |"
  lines = [head, "|" + "---|" * (len(cks) + 1)]
  for rk in rks:
    lines.append(f"| {row_fmt(rk)} | " + " | ".join(cell(by[(rk, ck)]) if (rk, ck) in by else "–" for ck in cks) + " |")
  return "\n".join(lines)


def _tokens(n: float) -> str:
  for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if n >= scale:
      return f"{n / scale:.3g}{unit}"
  return f"{n:g}"


def _pct(r: float) -> str:
  return f"{100 * r:.3g} %"


def _heatmap(ax, mat, xs, ys, title, fmt, cmap):
  from matplotlib import patheffects  # matplotlib is imported only when a figure is drawn
  im = ax.imshow(mat, origin="lower", aspect="auto", cmap=cmap)
  ax.set_xticks(range(len(xs)), [_tokens(x) for x in xs])
  ax.set_yticks(range(len(ys)), [_pct(y) for y in ys])
  ax.set_xlabel("adaptation tokens (budget)")
  ax.set_ylabel("replay ratio")
  ax.set_title(title, fontsize=10)
  for i in range(mat.shape[0]):
    for j in range(mat.shape[1]):
      if not np.isnan(mat[i, j]):
        ax.text(j, i, format(mat[i, j], fmt), ha="center", va="center", fontsize=8,
                path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")])
  return im


# ---------------------------------------------------------------------------------- study 1: bAbI (seed 000)


def _spearman(x, y) -> float:
  rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
  if np.std(rx) == 0 or np.std(ry) == 0:
    return 0.0
  return float(np.corrcoef(rx, ry)[0, 1])
