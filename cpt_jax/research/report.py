"""Reports of studies: tables and figures made from a study's results.csv.

`quickstart(DIR)` writes DIR/quickstart.{md,png}. `study_report(DIR, OUT)` writes OUT/<study>.md with its
figures under OUT/<study>/ and a copy of DIR/results.csv there, for the three seed studies (the study's
`report` field: babi, forgetting, ptpp). Each seed claim is checked by code (`Claim`): the verdict and
the numbers in its sentence are computed from the results, not written by hand.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np


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


def quickstart(root: str | Path) -> str:
  """Forgetting vs target loss and bAbI accuracy of the three quickstart methods; writes .md and .png."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  root = Path(root)
  rows = sorted(read_results(root / "results.csv"), key=lambda r: str(r["axis_method"]))
  columns = [("method", "axis_method", "s"), ("replay", "replay_ratio", ".2f"), ("target loss before", "target_loss_before", ".3f"),
             ("target loss after", "target_loss", ".3f"), ("base loss before", "base_loss_before", ".3f"),
             ("base loss after", "base_loss", ".3f"), ("forgetting", "forgetting", "+.4f"),
             ("bAbI accuracy", "babi_accuracy", ".3f"), ("minutes", "wall_seconds", ".1f")]
  for r in rows:
    r["wall_seconds"] = r["wall_seconds"] / 60 if r.get("wall_seconds") else None
  table = markdown_table(rows, columns)
  by = {r["axis_method"]: r for r in rows}
  verdict = ""
  if "no_replay" in by and "self_kl" in by:
    nr, kl = by["no_replay"], by["self_kl"]
    ratio = kl["forgetting"] / nr["forgetting"] if nr["forgetting"] else float("nan")
    target_gap = kl["target_loss"] / nr["target_loss"] - 1
    ok = ratio <= 0.5 and abs(target_gap) <= 0.05
    verdict = (f"\nSelf-generated replay with KL: forgetting = {ratio:.2f} × no-replay forgetting, target loss "
               f"{target_gap:+.1%} vs no replay → {'as the paper finds' if ok else 'NOT as the paper finds'} "
               "(≤ 0.5× forgetting, target loss within 5 %).\n")
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for r in rows:
    axes[0].scatter(r["forgetting"], r["target_loss"], s=60)
    axes[0].annotate(r["axis_method"], (r["forgetting"], r["target_loss"]), textcoords="offset points", xytext=(5, 5))
  axes[0].set_xlabel("forgetting (base loss after − before, nats)")
  axes[0].set_ylabel("target (bAbI) loss after")
  axes[0].axvline(0, color="gray", lw=0.5)
  axes[1].bar([str(r["axis_method"]) for r in rows], [r["babi_accuracy"] or 0 for r in rows])
  axes[1].set_ylabel("bAbI exact-match accuracy")
  fig.suptitle("cpt_jax quickstart: adaptation to bAbI, with and without replay")
  fig.tight_layout()
  fig.savefig(root / "quickstart.png", dpi=120)
  plt.close(fig)
  text = f"# Quickstart results\n\n{table}\n{verdict}\n![forgetting vs target](quickstart.png)\n"
  (root / "quickstart.md").write_text(text)
  return text


REPORTS: dict[str, Callable[[str | Path], str]] = {"quickstart": quickstart}


# ------------------------------------------------------------------------------------------- seed studies

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
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    plt.close(fig)
    self.figures.append(name)
    return f"![{caption}]({self.fig_dir.name}/{name})\n\n*{caption}*\n"


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
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
    lines.append(f"- `{argv}`: {_utc(i['started'])} → {_utc(i['finished'])}, {i['seconds'] / 60:.1f} min, "
                 f"{len(i['cells_run'])} cells run{', ' + str(len(i['failed'])) + ' failed' if i['failed'] else ''}")
  runner = sum(i["seconds"] for i in inv)
  cells = sum(r["wall_seconds"] or 0 for r in rows)
  pre_lines = []
  for size, path in (config.get("pretrained") or {}).items():
    run = Path(path) if Path(path).is_absolute() else Path.cwd() / path
    made = f"made by `python -m cpt_jax.train --config configs/study_common.py --workdir {path}`"
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
  m = machine()
  return "\n".join(
      ["## Runs", ""] + lines + pre_lines + [
          "",
          f"Machine: {m['cores']} CPU cores ({m['cpu']}), {m['system']}, CPU only (JAX on CPU).",
          f"Wall time: {runner / 60:.1f} min for the study runner (all invocations above; the reused pretraining "
          f"is extra), of which {cells / 60:.1f} min inside the {len(rows)} adaptation cells' training loops "
          "(results.csv `wall_seconds`; the rest is process start, compilation, data preparation, "
          "replay generation and evaluation).", ""])


def study_report(root: str | Path, out: str | Path = "docs/results", name: str | None = None) -> Path:
  """Writes OUT/<name>.md (+ OUT/<name>/*.png, OUT/<name>/results.csv) for the study in ROOT; returns the .md."""
  root, out = Path(root), Path(out)
  config = json.loads((root / "study_config.json").read_text())
  kind = config.get("report", "")
  if kind not in STUDY_REPORTS:
    raise ValueError(f"{root}: study report {kind!r} is not one of {sorted(STUDY_REPORTS)}")
  name = name or f"study_{kind}"
  rows = read_results(root / "results.csv")
  if not rows:
    raise ValueError(f"{root}/results.csv has no finished cells")
  fig_dir = out / name
  if fig_dir.exists():
    for old in fig_dir.glob("*.png"):
      old.unlink()
  fig_dir.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(root / "results.csv", fig_dir / "results.csv")
  st = Study(root, name, rows, config, fig_dir)
  title, body, claims = STUDY_REPORTS[kind](st)
  n_yes = sum(c.reproduced is True for c in claims)
  text = "\n".join([
      f"# {title}", "",
      f"Made by `python tools/report.py {root}` from `{root}/results.csv` (copied to `{name}/results.csv`). "
      "Every number and verdict below is computed from that file by `cpt_jax/research/report.py`.", "",
      provenance(root, config, rows),
      "## Seed claims", "",
      f"{n_yes} of {len(claims)} claims reproduced at this scale.", "",
      "| seed claim | our runs | reproduced? |", "|---|---|---|",
      *[c.row() for c in claims], "",
      body])
  path = out / f"{name}.md"
  path.write_text(text)
  return path


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
  from matplotlib import patheffects  # pylint: disable=g-import-not-at-top
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

def babi_guideline(rows, threshold_rel: float) -> dict[float, float | None]:
  """Per budget: the smallest replay ratio whose forgetting ≤ threshold_rel × base loss before (None: none)."""
  out = {}
  for b in sorted({r["adapt_tokens"] for r in rows}):
    ok = sorted(r["replay_ratio"] for r in rows
                if r["adapt_tokens"] == b and r["forgetting"] <= threshold_rel * r["base_loss_before"])
    out[b] = ok[0] if ok else None
  return out


def plateau_budget(acc_by_budget: dict[float, float], tol: float) -> float:
  """The smallest budget whose accuracy is within `tol` of the best budget's."""
  best = max(acc_by_budget.values())
  return min(b for b, a in acc_by_budget.items() if a >= best - tol)


def babi_report(st: Study):
  plt = _plt()
  cc = st.claims_cfg
  thr, tol = cc.get("forgetting_threshold_rel", 0.01), cc.get("plateau_tolerance", 0.02)
  variants = sorted({r["axis_data"] for r in st.rows}, key=lambda v: (v != "synthetic", v))
  budgets = sorted({r["adapt_tokens"] for r in st.rows})
  ratios = sorted({r["replay_ratio"] for r in st.rows})
  body, claims = [], []
  fig, axes = plt.subplots(len(variants), 2, figsize=(10, 3.6 * len(variants)), squeeze=False)
  acc_by, guide_by, forget_by = {}, {}, {}
  for k, v in enumerate(variants):
    rows = [r for r in st.rows if r["axis_data"] == v]
    by = {(r["replay_ratio"], r["adapt_tokens"]): r for r in rows}
    acc = np.array([[by[(q, b)]["babi_accuracy"] if (q, b) in by else np.nan for b in budgets] for q in ratios])
    fg = np.array([[by[(q, b)]["forgetting"] if (q, b) in by else np.nan for b in budgets] for q in ratios])
    _heatmap(axes[k, 0], acc, budgets, ratios, f"bAbI-{v}: bAbI accuracy (exact match)", ".2f", "viridis")
    _heatmap(axes[k, 1], fg, budgets, ratios, f"bAbI-{v}: forgetting (base loss rise, nats)", ".3f", "magma_r")
    full = ~np.isnan(acc).any(axis=1)  # ratios run at every budget: the plateau compares like with like
    acc_by[v] = {b: float(np.mean(acc[full, j])) for j, b in enumerate(budgets)}
    guide_by[v] = babi_guideline(rows, thr)
    forget_by[v] = fg
    body += [f"### bAbI-{v}: accuracy / forgetting (nats) per replay ratio × budget", "",
             _pivot_table(rows, "replay_ratio", "adapt_tokens",
                          lambda r: f"{_f(r['babi_accuracy'], '.3f')} / {_f(r['forgetting'], '+.3f')}",
                          _pct, _tokens), ""]
  heat = st.figure(fig, "heatmaps.png", "bAbI accuracy (left) and base-domain forgetting (right) over budget × "
                   "replay ratio, per target data variant")
  body.insert(0, heat)

  # accuracy vs budget
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for v in variants:
    ax.plot(budgets, [acc_by[v][b] for b in budgets], "o-", label=f"bAbI-{v} (mean over replay ratios)")
  ax.set_xscale("log")
  ax.set_xlabel("adaptation tokens")
  ax.set_ylabel("bAbI accuracy")
  ax.legend(fontsize=8)
  body.append(st.figure(fig, "accuracy_vs_budget.png", "bAbI accuracy against the token budget"))

  syn = "synthetic" if "synthetic" in variants else variants[0]
  # plateau
  pl = {v: plateau_budget(acc_by[v], tol) for v in variants}
  gain = acc_by[syn][budgets[-1]] - acc_by[syn][budgets[0]]
  learned = gain > tol
  claims.append(Claim(
      "Task accuracy plateaus at a budget (≈10^8.5 tokens for 1.7B); larger budgets add little",
      f"bAbI-{syn} mean accuracy by budget: " + ", ".join(f"{_tokens(b)}: {acc_by[syn][b]:.3f}" for b in budgets)
      + f"; plateau (within {tol:.2f} of the best) from {_tokens(pl[syn])} tokens"
      + ("" if learned else f"; accuracy rose only {gain:+.3f} over the range, so nothing to plateau")
      + (f"; the plateau is at a low accuracy ({max(acc_by[syn].values()):.3f}): this model's capacity, not the "
         "budget, bounds it" if learned and max(acc_by[syn].values()) < 0.5 else ""),
      (pl[syn] < budgets[-1]) if learned else None))
  # guideline: 5–10 % replay enough
  g = guide_by[syn]
  g_txt = ", ".join(f"{_tokens(b)}: {_pct(q) if q is not None else 'none of the grid'}" for b, q in g.items())
  enough = [q is not None and q <= 0.125 + 1e-9 for q in g.values()]
  claims.append(Claim(
      "5–10 % replay is enough to preserve general knowledge",
      f"smallest replay ratio keeping forgetting ≤ {_pct(thr)} of the base loss (bAbI-{syn}), per budget: {g_txt}"
      f" (grid ratios {', '.join(_pct(q) for q in ratios)}; 12.5 % is our nearest to 10 %)"
      + ("; no replay already stays under it, so nothing to preserve" if all(q == 0 for q in g.values()) else ""),
      None if all(q == 0 for q in g.values()) else all(enough)))
  # lower budgets need higher replay
  gs = [(b, q) for b, q in g.items()]
  qs = [1.0 if q is None else q for _, q in gs]
  nonincreasing = all(a >= b for a, b in zip(qs, qs[1:]))
  claims.append(Claim(
      "Lower compute budgets need higher replay ratios to prevent forgetting",
      f"guideline ratio from the smallest to the largest budget: {' → '.join(_pct(q) if q < 1 else 'none' for q in qs)}; "
      f"no-replay forgetting by budget: "
      + ", ".join(f"{_tokens(b)}: {forget_by[syn][0, j]:+.3f}" for j, b in enumerate(budgets)),
      (nonincreasing and qs[0] > qs[-1]) if len(set(qs)) > 1 else False))
  if len(variants) > 1:
    oth = [v for v in variants if v != syn][0]
    pairs = [(a, b) for a in st.rows for b in st.rows if a["axis_data"] == syn and b["axis_data"] == oth
             and a["adapt_tokens"] == b["adapt_tokens"] and a["replay_ratio"] == b["replay_ratio"]]
    wins = sum(a["babi_accuracy"] > b["babi_accuracy"] for a, b in pairs)
    ms, mo = np.mean([a["babi_accuracy"] for a, _ in pairs]), np.mean([b["babi_accuracy"] for _, b in pairs])
    claims.append(Claim(
        "bAbI-Synthetic (diverse) gives much better task mastery than bAbI-Original",
        f"mean accuracy {ms:.3f} (synthetic) vs {mo:.3f} (original) over {len(pairs)} matched cells; synthetic "
        f"higher in {wins}, lower in {sum(a['babi_accuracy'] < b['babi_accuracy'] for a, b in pairs)}; 'much better' = "
        f"≥ {tol:.2f} higher on average. Each is scored on its own variant's held-out stories (the synthetic test "
        "is the more varied one)", None if max(ms, mo) < tol else bool(ms - mo >= tol)))
    fs, fo = np.mean([a["forgetting"] for a, _ in pairs]), np.mean([b["forgetting"] for _, b in pairs])
    claims.append(Claim(
        "bAbI-Synthetic also retains general knowledge better",
        f"mean forgetting {fs:+.4f} (synthetic) vs {fo:+.4f} (original) nats", bool(fs < fo)))
  body += ["### Guideline: smallest replay ratio keeping forgetting under the threshold", "",
           f"Threshold: forgetting (base-domain loss after − before) ≤ {_pct(thr)} of the base loss before "
           "adapting. Budgets where no grid ratio meets it say so.", "",
           "| budget | " + " | ".join(f"bAbI-{v}" for v in variants) + " |", "|---|" + "---|" * len(variants)]
  for b in budgets:
    body.append(f"| {_tokens(b)} | " + " | ".join(
        _pct(guide_by[v][b]) if guide_by[v].get(b) is not None else "none of the grid" for v in variants) + " |")
  body += ["", f"Plateau budget (mean accuracy within {tol:.2f} of the best budget): "
           + ", ".join(f"bAbI-{v}: {_tokens(pl[v])} tokens" for v in variants) + ".", ""]
  title = "Study 1 (seed 000): bAbI adaptation — token budget × replay ratio, synthetic vs original data"
  return title, "## Results\n\n" + "\n".join(body), claims


# ----------------------------------------------------------------------------- study 2: forgetting (seed 001)

def _method(r) -> tuple[str, str, float]:
  return (r["replay_kind"], r["replay_loss"], r["replay_coeff"])


def forgetting_report(st: Study):
  plt = _plt()
  cc = st.claims_cfg
  near, same = cc.get("nearly_eliminates", 0.25), cc.get("same_as_real", 0.25)
  stages = sorted({r["ptpp"] for r in st.rows})
  methods = list(dict.fromkeys(r["axis_method"] for r in st.rows))
  by = {(r["ptpp"], r["axis_method"]): r for r in st.rows}
  body, claims = [], []
  for p in stages:
    rows = [by[(p, m)] for m in methods if (p, m) in by]
    none = by.get((p, "none"))
    for r in rows:
      r["forgetting_share"] = r["forgetting"] / none["forgetting"] if none and none["forgetting"] else None
      r["method"] = r["axis_method"]
      r["replay"] = f"{r['replay_kind']}" + (f" {r['replay_loss']} λ={r['replay_coeff']:g}" if r["replay_kind"] != "none" else "")
    body += [f"### PTPP {p:g} (base loss before adapting {rows[0]['base_loss_before']:.3f}, Spanish loss before "
             f"{rows[0]['target_loss_before']:.3f})", "",
             markdown_table(rows, [("method", "method", "s"), ("replay", "replay", "s"),
                                   ("Spanish loss after", "target_loss", ".3f"), ("English loss after", "base_loss", ".3f"),
                                   ("forgetting (nats)", "forgetting", "+.4f"), ("÷ no-replay", "forgetting_share", ".2f")]),
             ""]
  # figures: forgetting per method and stage; trade-off
  fig, ax = plt.subplots(figsize=(9, 3.8))
  w = 0.8 / len(stages)
  for k, p in enumerate(stages):
    ax.bar(np.arange(len(methods)) + k * w, [by[(p, m)]["forgetting"] if (p, m) in by else np.nan for m in methods],
           w, label=f"PTPP {p:g}")
  ax.set_xticks(np.arange(len(methods)) + w * (len(stages) - 1) / 2, methods, rotation=20, fontsize=8)
  ax.axhline(0, color="gray", lw=0.5)
  ax.set_ylabel("forgetting (English loss rise, nats)")
  ax.legend(fontsize=8)
  body.append(st.figure(fig, "forgetting_by_method.png", "Forgetting of each method, from a low- and a high-PTPP "
                        "checkpoint of the same pretraining run"))
  fig, ax = plt.subplots(figsize=(6, 4.2))
  for k, p in enumerate(stages):
    pts = [by[(p, m)] for m in methods if (p, m) in by]
    ax.scatter([r["forgetting"] for r in pts], [r["target_loss"] for r in pts], color=f"C{k}", label=f"PTPP {p:g}")
    for r in pts:
      ax.annotate(r["axis_method"], (r["forgetting"], r["target_loss"]), fontsize=6, xytext=(3, 3),
                  textcoords="offset points")
    sweep = sorted((r for r in pts if r["replay_kind"] == "self" and r["replay_loss"] == "kl"), key=lambda r: r["replay_coeff"])
    ax.plot([r["forgetting"] for r in sweep], [r["target_loss"] for r in sweep], "--", color=f"C{k}", lw=0.8)
  ax.set_xlabel("forgetting (nats)")
  ax.set_ylabel("Spanish loss after adapting")
  ax.legend(fontsize=8)
  body.append(st.figure(fig, "tradeoff.png", "Target loss against forgetting; dashed: the λ sweep of "
                        "self-generated KL replay"))

  low, high = stages[0], stages[-1]
  g = lambda p, m: by[(p, m)]["forgetting"] if (p, m) in by else float("nan")
  for p in stages:
    n0 = g(p, "none")
    s_best = min(g(p, "self_ntp"), g(p, "self_kl_l1"))
    claims.append(Claim(
        f"Self-generated replay nearly eliminates forgetting (PTPP {p:g})",
        f"no replay {n0:+.4f} nats; self-generated NTP {g(p, 'self_ntp'):+.4f}, KL λ=1 {g(p, 'self_kl_l1'):+.4f} "
        f"(best = {s_best / n0:.2f} × no replay; 'nearly eliminates' = ≤ {near:.2f} ×)",
        bool(s_best <= near * n0) if n0 > 0 else None))
  p = low
  n0 = g(p, "none")
  d_ntp, d_kl = g(p, "self_ntp") - g(p, "real_ntp"), g(p, "self_kl_l1") - g(p, "real_kl")
  claims.append(Claim(
      f"Self-generated replay works about as well as real data (PTPP {p:g})",
      f"self − real forgetting: NTP {d_ntp:+.4f}, KL {d_kl:+.4f} nats (no replay {n0:+.4f}; 'about as well' = "
      f"|difference| ≤ {same:.2f} × no replay)",
      bool(max(abs(d_ntp), abs(d_kl)) <= same * n0) if n0 > 0 else None))
  kl_real, ntp_real, kl_self, ntp_self = g(p, "real_kl"), g(p, "real_ntp"), g(p, "self_kl_l1"), g(p, "self_ntp")
  claims.append(Claim(
      f"KL beats NTP: slightly on self-generated data, much on off-policy (real) data (PTPP {p:g}, λ=1)",
      f"real: KL {kl_real:+.4f} vs NTP {ntp_real:+.4f}; self-generated: KL {kl_self:+.4f} vs NTP {ntp_self:+.4f} nats",
      bool(kl_real < ntp_real and kl_self <= ntp_self + 0.1 * abs(n0) and (ntp_real - kl_real) > (ntp_self - kl_self))))
  rhos = []
  for p in stages:
    sweep = sorted((by[(p, m)] for m in methods if (p, m) in by and by[(p, m)]["replay_kind"] == "self"
                    and by[(p, m)]["replay_loss"] == "kl"), key=lambda r: r["replay_coeff"])
    if len(sweep) >= 3:
      lam = [r["replay_coeff"] for r in sweep]
      rhos.append((p, _spearman(lam, [r["forgetting"] for r in sweep]), _spearman(lam, [r["target_loss"] for r in sweep]),
                   sweep))
  if rhos:
    seq = lambda sw, key, fmt: ", ".join(format(r[key], fmt) for r in sw)
    txt = "; ".join(f"PTPP {p:g}: λ {seq(sw, 'replay_coeff', 'g')} → forgetting {seq(sw, 'forgetting', '+.3f')}, "
                    f"Spanish loss {seq(sw, 'target_loss', '.3f')} (Spearman with λ: {rf:+.2f}, {rt:+.2f})"
                    for p, rf, rt, sw in rhos)
    claims.append(Claim("Larger λ trades less forgetting for a higher target loss", txt,
                        all(rf < 0 and rt > 0 for _, rf, rt, _ in rhos)))
  # capacity: forgetting floor
  floors = {}
  for p in stages:
    reps = [by[(p, m)] for m in methods if (p, m) in by and by[(p, m)]["replay_kind"] != "none"]
    n = by[(p, "none")]
    reached = [r for r in reps if r["target_loss"] <= n["target_loss"] * 1.05]
    pool = reached or reps
    best = min(pool, key=lambda r: r["forgetting"])
    floors[p] = (best, bool(reached), n)
  fl, fh = floors[low][0]["forgetting"], floors[high][0]["forgetting"]
  rl = fl / floors[low][0]["base_loss_before"]
  rh = fh / floors[high][0]["base_loss_before"]
  claims.append(Claim(
      "Forgetting persists without spare capacity: the forgetting floor is higher after longer pretraining",
      f"floor (least forgetting over the replay methods and λ sweep, among runs within 5 % of the no-replay "
      f"Spanish loss): PTPP {low:g}: {fl:+.4f} nats ({floors[low][0]['axis_method']}, {rl:+.2%} of the base loss), "
      f"PTPP {high:g}: {fh:+.4f} nats ({floors[high][0]['axis_method']}, {rh:+.2%}); no-replay forgetting "
      f"{floors[low][2]['forgetting']:+.4f} → {floors[high][2]['forgetting']:+.4f}",
      bool(fh > fl)))
  title = "Study 2 (seed 001): forgetting — replay source, loss, λ, and capacity (English → Spanish)"
  body.insert(0, "Forgetting = English (base) validation loss after adapting − before. Target = Spanish "
              "validation loss. All replay methods use 25 % of every batch.\n")
  return title, "## Results\n\n" + "\n".join(body), claims


def _spearman(x, y) -> float:
  rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
  if np.std(rx) == 0 or np.std(ry) == 0:
    return 0.0
  return float(np.corrcoef(rx, ry)[0, 1])


# ----------------------------------------------------------------------------- study 3: PTPP laws (seed 002)

def ptpp_report(st: Study):
  from cpt_jax.research import fit as fit_lib  # pylint: disable=g-import-not-at-top
  from cpt_jax.research import laws  # pylint: disable=g-import-not-at-top
  from cpt_jax.research import plan as plan_lib  # pylint: disable=g-import-not-at-top
  plt = _plt()
  cc = st.claims_cfg
  k_anchor = int(cc.get("anchors", 3))
  stages = sorted({r["ptpp"] for r in st.rows})
  early, last = stages[:-1], stages[-1]
  table = {k: np.array([r[k] for r in st.rows], dtype=float)
           for k in ("params", "ptpp", "adapt_tokens", "atpp", "replay_ratio", "target_loss", "base_loss",
                     "base_loss_before", "forgetting")}
  body, claims = [], []
  for p in stages:
    rows = [r for r in st.rows if r["ptpp"] == p]
    body += [f"### PTPP {p:g}: Spanish loss / forgetting (nats) per replay ratio × ATPP "
             f"(English loss before {rows[0]['base_loss_before']:.3f})", "",
             _pivot_table(rows, "replay_ratio", "atpp",
                          lambda r: f"{r['target_loss']:.3f} / {r['forgetting']:+.3f}", _pct, lambda a: f"{a:.3g}"), ""]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  ratios = sorted(set(table["replay_ratio"].tolist()))
  for k, p in enumerate(stages):
    for j, q in enumerate(ratios):
      rs = sorted((r for r in st.rows if r["ptpp"] == p and r["replay_ratio"] == q), key=lambda r: r["atpp"])
      style = ["o-", "s--", "^:", "d-."][j % 4]
      lab = f"PTPP {p:g}, r {_pct(q)}"
      axes[0].plot([r["atpp"] for r in rs], [r["target_loss"] for r in rs], style, color=f"C{k}", label=lab, ms=4)
      axes[1].plot([r["atpp"] for r in rs], [r["forgetting"] for r in rs], style, color=f"C{k}", label=lab, ms=4)
  for ax, yl in zip(axes, ("Spanish (target) loss", "forgetting (English loss rise, nats)")):
    ax.set_xscale("log")
    ax.set_xlabel("ATPP")
    ax.set_ylabel(yl)
  axes[1].legend(fontsize=6, ncol=2)
  body.append(st.figure(fig, "grid.png", "The adaptation grid at each PTPP stage"))

  forms = list(laws.ADAPTATION_FORMS)
  res = {}
  for target in ("target_loss", "base_loss"):
    res[target] = fit_lib.forecast(table, forms, fit_ptpp=early, test_ptpp=[last], target=target, anchors=k_anchor)
  lines = ["### Forecast of the held-out stage", "",
           f"Fitted on PTPP {', '.join(f'{p:g}' for p in early)} ({int(np.isin(table['ptpp'], early).sum())} runs); "
           f"scored on PTPP {last:g} ({len(next(iter(res['target_loss'].values())).eval_rows)} runs, the {k_anchor} "
           "anchors excluded from the score). Same as "
           f"`python tools/fit_laws.py results.csv --fit-ptpp {','.join(f'{p:g}' for p in early)} "
           f"--test-ptpp {last:g} --anchors {k_anchor}` (and `--target base_loss`).", "",
           "| loss | form | Huber-on-log | MAE_rel | calibration slope | Huber-on-log, anchored | MAE_rel, anchored |",
           "|---|---|---|---|---|---|---|"]
  for target, fcs in res.items():
    for name, fc in fcs.items():
      m, ma = fc.metrics, fc.metrics_anchored or {}
      lines.append(f"| {target} | {name} | {m['huber_log']:.3g} | {m['mae_rel']:.4f} | {m['calibration_slope']:.2f} | "
                   f"{_f(ma.get('huber_log'), '.3g')} | {_f(ma.get('mae_rel'), '.4f')} |")
  body += lines + [""]
  fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
  for ax, (target, fcs) in zip(axes, res.items()):
    for name in ("dcpt", min((f for f in fcs if f != "dcpt"), key=lambda f: fcs[f].metrics["huber_log"])):
      fc = fcs[name]
      ax.scatter(fc.y_eval, fc.fit.predict(fc.X_eval), s=18, label=f"{name} (MAE_rel {fc.metrics['mae_rel']:.3f})")
      if fc.anchored is not None:
        ax.scatter(fc.y_eval, fc.anchored.predict(fc.X_eval), s=18, marker="x",
                   label=f"{name} + anchors ({fc.metrics_anchored['mae_rel']:.3f})")
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"observed {target} at PTPP {last:g}")
    ax.set_ylabel("forecast")
    ax.legend(fontsize=7)
  body.append(st.figure(fig, "forecast.png", f"Forecast of PTPP {last:g} from laws fitted on the earlier stages: "
                        "D-CPT transfer vs the best PTPP-aware form, with and without anchors"))

  for target, what in (("target_loss", "target loss"), ("base_loss", "base loss (the paper forecasts the target; "
                                                                     "its planning needs this one too)")):
    t = res[target]
    aware = [f for f in t if f != "dcpt"]
    best_aware = min(aware, key=lambda f: t[f].metrics["huber_log"])
    beat = [f for f in aware if t[f].metrics["huber_log"] < t["dcpt"].metrics["huber_log"]
            and t[f].metrics["mae_rel"] < t["dcpt"].metrics["mae_rel"]]
    claims.append(Claim(
      f"PTPP-aware laws forecast a later stage's {what} better than PTPP-agnostic D-CPT transfer",
      f"held-out Huber-on-log / MAE_rel at PTPP {last:g}: D-CPT {t['dcpt'].metrics['huber_log']:.3g} / "
      f"{t['dcpt'].metrics['mae_rel']:.4f}; best PTPP-aware ({best_aware}) {t[best_aware].metrics['huber_log']:.3g} / "
      f"{t[best_aware].metrics['mae_rel']:.4f}; {len(beat)} of {len(aware)} PTPP-aware forms beat D-CPT on both "
      "(verdict: yes if a majority do)",
      bool(len(beat) > len(aware) / 2)))
  t = res["target_loss"]
  aware = [f for f in t if f != "dcpt"]
  if "gated_floor" in t:
    rank = sorted(aware, key=lambda f: t[f].metrics["huber_log"])
    claims.append(Claim(
        "The gated+floor form (Form 3) is the best PTPP-aware form",
        "held-out Huber-on-log ranking: " + " < ".join(f"{f} ({t[f].metrics['huber_log']:.3g})" for f in rank),
        rank[0] == "gated_floor"))
  improved = [f for f in t if t[f].metrics_anchored["huber_log"] < t[f].metrics["huber_log"]]
  r0 = sorted(t, key=lambda f: t[f].metrics["huber_log"])
  r1 = sorted(t, key=lambda f: t[f].metrics_anchored["huber_log"])
  claims.append(Claim(
      f"A few anchors at the evaluated stage improve accuracy without changing the ranking ({k_anchor} anchors)",
      f"anchors lowered held-out Huber-on-log for {len(improved)} of {len(t)} forms; ranking without anchors "
      f"{', '.join(r0)}; with anchors {', '.join(r1)} (Spearman {_spearman(list(range(len(r0))), [r1.index(f) for f in r0]):+.2f})",
      bool(len(improved) > len(t) / 2 and r0[0] == r1[0])))

  # planning at the last stage with the best anchored laws
  last_rows = [r for r in st.rows if r["ptpp"] == last]
  n0 = [r["forgetting"] for r in last_rows if r["replay_ratio"] == 0]
  max_target = float(np.quantile([r["target_loss"] for r in last_rows], cc.get("plan_target_quantile", 0.5)))
  max_forget = float(cc.get("plan_forgetting_share", 0.5) * np.mean(n0))
  pick = {tg: min(res[tg], key=lambda f: res[tg][f].metrics_anchored["huber_log"]) for tg in res}
  laws_ = {tg: res[tg][pick[tg]].anchored for tg in res}
  params = float(last_rows[0]["params"])
  before = float(np.median([r["base_loss_before"] for r in last_rows]))
  atpps = sorted({r["atpp"] for r in last_rows})
  pl = plan_lib.plan(laws_["target_loss"], laws_["base_loss"], params=params, ptpp=last, base_loss_before=before,
                     max_target_loss=max_target, max_forgetting=max_forget, max_atpp=atpps[-1], min_atpp=atpps[0],
                     replay_range=(0.0, max(ratios)))
  plan_lib.plot(pl, st.fig_dir / "plan.png")
  st.figures.append("plan.png")
  feas = sorted((r for r in last_rows if r["target_loss"] <= max_target and r["forgetting"] <= max_forget),
                key=lambda r: (r["atpp"], r["target_loss"]))
  meas = feas[0] if feas else None
  if pl.feasible and meas:
    # agree: the plan's ATPP is not below the largest infeasible grid ATPP under the measured cheapest one
    lower = max([a for a in atpps if a < meas["atpp"]], default=0.0)
    agree = lower < pl.atpp <= meas["atpp"] * 1.02  # 2 %: the planner's search resolution
    ptxt = (f"plan (laws {pick['target_loss']} / {pick['base_loss']} + anchors): ATPP {pl.atpp:.3g}, replay "
            f"{_pct(pl.replay_ratio)}, predicted Spanish loss {pl.target_loss:.3f}, forgetting {pl.forgetting:+.4f}; "
            f"measured cheapest feasible grid cell: ATPP {meas['atpp']:.3g}, replay {_pct(meas['replay_ratio'])} "
            f"(Spanish {meas['target_loss']:.3f}, forgetting {meas['forgetting']:+.4f})")
  else:
    agree = (not pl.feasible) and meas is None
    ptxt = (f"plan feasible: {pl.feasible}; measured grid has a feasible cell: {meas is not None}"
            + (f" (ATPP {meas['atpp']:.3g}, replay {_pct(meas['replay_ratio'])})" if meas else ""))
  claims.append(Claim(
      f"The laws plan the cheapest (ATPP, replay) meeting a target and a forgetting threshold (PTPP {last:g}: "
      f"Spanish loss ≤ {max_target:.3f}, forgetting ≤ {max_forget:+.4f})",
      ptxt + "; agreement = the plan's ATPP falls between the grid's last infeasible and (within 2 %) first "
      "feasible ATPP",
      bool(agree)))
  body += ["### Plan", "",
           f"Thresholds at PTPP {last:g}: Spanish loss ≤ {max_target:.3f} (the grid's median there), forgetting ≤ "
           f"{max_forget:+.4f} nats ({cc.get('plan_forgetting_share', 0.5):g} × the mean no-replay forgetting); "
           f"ATPP in [{atpps[0]:g}, {atpps[-1]:g}], replay in [0, {max(ratios):g}]. Laws: the best anchored forms "
           f"({pick['target_loss']} for the Spanish loss, {pick['base_loss']} for the English loss).", "",
           "```", json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in pl.summary().items()}), "```",
           "", f"![plan]({st.fig_dir.name}/plan.png)", "", "*Feasible region of the plan (green) and its cheapest point*", ""]
  title = f"Study 3 (seed 002): PTPP-aware adaptation laws — fit on PTPP {', '.join(f'{p:g}' for p in early)}, forecast {last:g}"
  return title, "## Results\n\n" + "\n".join(body), claims


STUDY_REPORTS: dict[str, Callable[[Study], tuple[str, str, list[Claim]]]] = {
    "babi": babi_report, "forgetting": forgetting_report, "ptpp": ptpp_report}
