"""What a study costs, before it runs: per cell, the tokens it trains, its training FLOPs, device-hours on a
named accelerator at an assumed MFU, and how many times it reads each corpus (epochs).

  cost = study_cost.estimate(study.expand(study_cfg, root))
  print(study_cost.table(cost, "h100", 0.4))   # what `python -m cpt_jax.study ... --status` prints
  study_cost.check_repeats(cost)                # CorpusRepeated naming the cell, the corpus and its epochs

Tokens: every row of every step a run trains (target and replay rows), rounded up to whole steps as the loop
does: pretraining ptpp·N (N = build.num_params_of), adaptation build.token_budget. A reused pretraining run is
not this study's work (0 tokens). A self-replay cell (`replay/…`) generates `study.replay_tokens` tokens.

FLOPs: `metrics.flops_per_step` (MFU's numerator: 6·(non-embedding params + V·D) + 12·L·T·D per trained token)
times the steps; when the replay loss has the frozen teacher in the step (`replay.loss=kl`), its forward on every
replay row (a third of a trained token) is included, and self-generated tokens (replay cells, on-the-fly self
replay) cost one forward each. Evaluations are not counted (a few per cent at most).

Device-hours: FLOPs / (the accelerator's dense bf16 peak × MFU), summed over chips (ACCELERATORS). On "cpu" a
finished cell's hours are its measured wall seconds (summary.json) and an unfinished one's its FLOPs at the FLOP
rate the finished cells achieved (else at the measured matmul peak × CPU_MFU).

Epochs: the tokens a run draws from each corpus (the target's rows; replay's rows from data.base, or from the
self-generated samples) over that corpus's size in tokens as the loader packs it:
  corpus (english, spanish)  train-split characters (the prepared dataset's corpus_stats.json, else the sizes of
                             docs/corpora.md) × tokens per character measured with the run's tokenizer on a sample
                             of the corpus, else taken from a table ("estimated")
  babi                       train stories × rows per story, from a generated sample of stories tokenized the
                             same way (packing padding included)
  self-generated samples     the replay cell's tokens
  hf, tfds, records, files   the source's `size_tokens` (config.py); unknown when 0
`size_tokens` > 0 overrides the measurement for any source. A run that reads a corpus more than MAX_EPOCHS times
is flagged; `run_study` refuses to start it (`check_repeats`). bAbI-Original, a small fixed pool that the paper
repeats on purpose (Spiegelhalter et al.), is reported ("by design") but never refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ml_collections

from cpt_jax import build, metrics as metrics_lib, model as model_lib, objective as objective_lib, paths
from cpt_jax.data import corpora, records, sources
from cpt_jax.data.tokenizer import load_tokenizer, run_tokenizer_path

if TYPE_CHECKING:
  from cpt_jax.study import Cell

MAX_EPOCHS = 4.0
DEFAULT_MFU = 0.4  # an accelerator's assumed model FLOP utilization
# The CPU's, of its measured matmul peak, when no cell of the study has finished: the small forgetting study's
# 46k-parameter pretraining reached 7 % on 2 shared cores (9.2 GFLOP/s of 138, wall time with compile and evals).
CPU_MFU = 0.07

# name → (label, dense bf16 peak FLOP/s per chip, vendor data sheets); cpu: measured instead
ACCELERATORS = {
    "h100": ("H100 SXM", 989e12), "h200": ("H200", 989e12), "a100": ("A100", 312e12),
    "tpu-v4": ("TPU v4", 275e12), "tpu-v5e": ("TPU v5e", 197e12), "tpu-v5p": ("TPU v5p", 459e12),
    "cpu": ("CPU", None),
}

# Tokens per character of the local corpora with a SentencePiece model trained on `english` by
# build.resolve_tokenizer, measured at vocabularies 512 and 2048 (200 documents; 320 bAbI stories); the larger ones
# are rules of thumb. Used only when no tokenizer of the run exists yet: the sizes are then "estimated".
_TOKENS_PER_CHAR = (  # (vocab up to, {corpus: tokens per char})
    (512, {"english": 0.51, "spanish": 0.69, "babi": 0.55}),
    (2048, {"english": 0.32, "spanish": 0.54, "babi": 0.40}),
    (8192, {"english": 0.28, "spanish": 0.47, "babi": 0.33}),
    (math.inf, {"english": 0.25, "spanish": 0.42, "babi": 0.28}),
)
# Train-split characters of the local corpora as docs/corpora.md measures them (seed 0, no cap): used when the
# corpus has not been prepared on this machine.
_DOCUMENTED_CHARS = {"english": 21_577_686, "spanish": 4_630_264}
_SAMPLE_DOCS, _SAMPLE_CHARS = 200, 5000  # tokens-per-char sample: that many documents, that many chars of each
_BABI_SAMPLE_STORIES = 20  # stories per task generated to size a bAbI pool


class CorpusRepeated(ValueError):
  """A run of the study reads a corpus more than MAX_EPOCHS times; the message names the cell and corpus."""


@dataclasses.dataclass
class Corpus:
  label: str
  tokens: float | None  # size in tokens as the loader packs it; None: unknown
  how: str  # where the size comes from
  by_design: bool = False  # a fixed pool repeated on purpose: reported, never refused
  estimated: bool = False


@dataclasses.dataclass
class CellCost:
  cell: Cell
  tokens: int  # trained (pretrain, adapt) or generated (replay) tokens
  flops: float
  steps: int = 0
  draws: dict[str, float] = dataclasses.field(default_factory=dict)  # corpus key → tokens read
  wall_seconds: float | None = None  # measured, finished cells only
  note: str = ""


@dataclasses.dataclass
class StudyCost:
  cells: list[CellCost]
  corpora: dict[str, Corpus]

  def epochs(self, c: CellCost) -> dict[str, float | None]:
    return {k: (n / self.corpora[k].tokens if self.corpora[k].tokens else None) for k, n in c.draws.items()}

  @property
  def flops(self) -> float:
    return sum(c.flops for c in self.cells)

  @property
  def tokens(self) -> int:
    return sum(c.tokens for c in self.cells if c.cell.kind != "replay")


def accelerator(name: str) -> tuple[str, str, float | None]:
  """(key, label, peak FLOP/s per chip) of an ACCELERATORS name, forgiving spelling: H100, h100-sxm, "TPU v5e",
  tpu_v5p, v4."""
  norm = name.lower().replace("nvidia", "").replace("sxm", "")
  norm = "".join(ch for ch in norm if ch.isalnum())
  aliases = {k.replace("-", ""): k for k in ACCELERATORS} | {k[4:]: k for k in ACCELERATORS if k.startswith("tpu-")}
  if norm not in aliases:
    raise ValueError(f"--accelerator={name!r}: one of {', '.join(ACCELERATORS)}")
  key = aliases[norm]
  return (key, *ACCELERATORS[key])


def default_accelerator(study: ml_collections.ConfigDict) -> str:
  """cpu for a float32 study (the small, CPU variants), h100 for a bfloat16 one (the full variants)."""
  return "cpu" if study.pretrain.model.compute_dtype == "float32" else "h100"


def _cfg(d: dict[str, Any]) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(d)


def _model(cfg) -> model_lib.ModelConfig:
  return model_lib.ModelConfig.from_config(cfg.model, cfg.data.vocab_size)


def _steps(cfg) -> int:
  return max(1, math.ceil(build.token_budget(cfg, build.num_params_of(cfg)) / build.tokens_per_step(cfg)))


def replay_rows(cfg) -> int:
  """Replay rows per step of a run (one batch shard; the objective's rounding)."""
  ratio = float(cfg.replay.ratio)
  if not ratio:
    return 0
  try:
    return objective_lib.replay_rows_for(cfg.data.batch_size, ratio, 1)
  except objective_lib.ObjectiveError:
    return round(cfg.data.batch_size * ratio)


def teacher_in_step(cfg) -> bool:
  loss = objective_lib.REPLAY_LOSSES.get(cfg.replay.loss)
  return replay_rows(cfg) > 0 and loss is not None and loss.needs_teacher


def _source_label(src) -> str:
  if src.kind == "babi":
    tasks = "" if src.babi_tasks.strip() == "all" else f", tasks {src.babi_tasks}"
    return f"babi_{src.babi_mode}({src.babi_stories}/task{tasks})"
  if src.kind == "corpus":
    return src.name
  if src.kind == "hf" and src.name:
    return src.name.rsplit("/", 1)[-1]  # HuggingFaceFW/fineweb-edu:sample-100BT → fineweb-edu:sample-100BT
  return f"{src.kind}:{src.name or src.path}"


def _read_json(path) -> dict | None:
  try:
    return json.loads(paths.path(path).read_text())
  except (OSError, ValueError):
    return None


class _Sizer:
  """Corpus sizes, each measured once per (corpus, tokenizer)."""

  def __init__(self):
    self.corpora: dict[str, Corpus] = {}
    self._tokenizers: dict[str, Any] = {}

  def tokenizer(self, cfg, workdir: Path | None) -> tuple[str, Any]:
    """(identity, tokenizer or None) of a run: its own copy, init_from's, data.tokenizer, or the one
    build.resolve_tokenizer trains from data.base; None when none exists yet."""
    candidates = []
    if workdir is not None:
      candidates.append(run_tokenizer_path(workdir))
    if cfg.stage == "adapt" and cfg.init_from:
      candidates.append(run_tokenizer_path(cfg.init_from))
    if cfg.data.tokenizer:
      candidates.append(paths.path(cfg.data.tokenizer))
    base = cfg.data.base
    data_dir = sources.data_dir_of(cfg.data)
    candidates.append(data_dir / "tokenizers" / f"{base.kind}_{base.name or 'data'}_v{cfg.data.vocab_size}.model")
    for path in candidates:
      try:
        if not path.exists():
          continue
        digest = hashlib.sha1(path.read_bytes()).hexdigest()  # runs keep copies: one tokenizer, many paths
        if digest not in self._tokenizers:
          self._tokenizers[digest] = (str(path), load_tokenizer(path))
        return self._tokenizers[digest]
      except Exception:  # pylint: disable=broad-except  # an unreadable tokenizer: try the next, else estimate
        continue
    return f"estimated:v{cfg.data.vocab_size}", None

  def size(self, src, cfg, workdir: Path | None) -> str:
    """The key of the corpus `src` (a source config of `cfg`), its size added to self.corpora."""
    tok_id, tok = self.tokenizer(cfg, workdir)
    label = _source_label(src)
    stated = float(src.get("size_tokens", 0) or 0)
    key = f"{label}|{stated if stated else tok_id}|{cfg.model.max_len}"
    if key in self.corpora:
      return key
    try:
      if stated > 0:
        corpus = Corpus(label, stated, "stated in the config (size_tokens)")
      elif src.kind == "corpus":
        corpus = self._local_corpus(src, cfg, tok_id, tok)
      elif src.kind == "babi":
        corpus = self._babi(src, cfg, tok_id, tok)
      else:
        corpus = Corpus(label, None, "unknown: set size_tokens of this source (tokens of its train split)")
    except Exception as e:  # pylint: disable=broad-except  # a size is a nicety: never what stops a study
      corpus = Corpus(label, None, f"unknown ({type(e).__name__}: {str(e)[:100]})")
    self.corpora[key] = corpus
    return key

  def _local_corpus(self, src, cfg, tok_id: str, tok) -> Corpus:
    data_dir = sources.data_dir_of(cfg.data)
    stats = _read_json(corpora.stats_path(data_dir, src.name))
    if stats:
      chars, where = stats["splits"]["train"]["chars"], "corpus_stats.json"
    elif src.name in _DOCUMENTED_CHARS:
      chars, where = _DOCUMENTED_CHARS[src.name], "docs/corpora.md (not prepared here)"
    else:
      return Corpus(src.name, None, "unknown: not prepared here")
    per_char, measured = None, ""
    if tok is not None and records.exists(data_dir, f"cpt_{src.name}"):
      source = records.RecordSource(str(records.dataset_dir(data_dir, f"cpt_{src.name}")), "train")
      idx = random.Random(0).sample(range(len(source)), min(_SAMPLE_DOCS, len(source)))
      texts = [source[i]["text"][:_SAMPLE_CHARS] for i in idx]
      per_char = sum(len(tok.encode(t)) for t in texts) / max(1, sum(len(t) for t in texts))
      measured = f"measured with {tok_id}"
    if per_char is None:
      per_char = _table_per_char(src.name, cfg.data.vocab_size)
    return Corpus(src.name, chars * per_char,
                  f"{chars / 1e6:.1f}M chars ({where}) × {per_char:.3f} tokens/char "
                  f"({measured or f'estimated for vocab {cfg.data.vocab_size}'})", estimated=not measured)

  def _babi(self, src, cfg, tok_id: str, tok) -> Corpus:
    from cpt_jax.data.babi import dataset as babi_dataset  # pylint: disable=g-import-not-at-top
    tasks = sources.babi_tasks(src.babi_tasks)
    stories = int(src.babi_stories)
    sample = min(stories, _BABI_SAMPLE_STORIES)
    train = babi_dataset.build_babi_splits(src.babi_mode, sample, 0, tasks)["train"]
    train_stories = len({r["story_id"] for r in train})
    per_char = None if tok is not None else _table_per_char("babi", cfg.data.vocab_size)

    def length(r) -> int:  # BOS prompt completion EOS, cut to a row of T + 1 (pipeline._TokenizeExample)
      if tok is not None:
        n = len(tok.encode(r["prompt"])) + len(tok.encode(r["completion"])) + 2
      else:
        n = round((len(r["prompt"]) + len(r["completion"])) * per_char) + 2
      return min(n, cfg.model.max_len + 1) - 1

    lengths = [length(r) for r in train]
    random.Random(0).shuffle(lengths)
    rows, fill = 1, 0  # one packing bin, in order: an example that does not fit starts the next row
    for n in lengths:
      if fill + n > cfg.model.max_len:
        rows, fill = rows + 1, 0
      fill += n
    n_train, _, _ = babi_dataset.split_sizes(stories, 0.1, 0.1)
    rows_per_epoch = rows / train_stories * n_train * len(tasks)
    how = (f"{n_train * len(tasks):,} train stories × {rows / train_stories:.3f} rows of {cfg.model.max_len} per "
           f"story (packing a sample of {sample}/task, {'tokenized with ' + tok_id if tok else 'estimated'})")
    return Corpus(_source_label(src), rows_per_epoch * cfg.model.max_len, how,
                  by_design=src.babi_mode == "original", estimated=tok is None)


def _table_per_char(corpus: str, vocab: int) -> float:
  for limit, values in _TOKENS_PER_CHAR:
    if vocab <= limit:
      return values.get(corpus, values["english"])
  raise AssertionError("unreachable")


def _wall_seconds(cell: Cell) -> float | None:
  if cell.kind == "replay" or not cell.done:
    return None
  s = _read_json(cell.workdir / "summary.json")
  return float(s["wall_seconds"]) if s and s.get("wall_seconds") is not None else None


def estimate(cells: list[Cell]) -> StudyCost:
  """The cost of every cell of an expanded study (`study.expand`)."""
  sizer = _Sizer()
  by_id = {c.id: c for c in cells}
  out = []
  for cell in cells:
    if cell.reused:
      out.append(CellCost(cell, 0, 0.0, note="reused: not this study's work"))
      continue
    if cell.kind == "replay":
      out.append(_replay_cost(cell, by_id))
      continue
    cfg = _cfg(cell.config)
    model, T, B = _model(cfg), cfg.model.max_len, cfg.data.batch_size
    steps = _steps(cfg)
    cost = CellCost(cell, steps * B * T, 0.0, steps, wall_seconds=_wall_seconds(cell))
    if cfg.stage == "pretrain":
      cost.flops = steps * metrics_lib.flops_per_step(model, T, B)
      cost.draws[sizer.size(cfg.data.base, cfg, cell.workdir)] = cost.tokens
    else:
      r = replay_rows(cfg)
      teacher = teacher_in_step(cfg)
      cost.flops = steps * metrics_lib.flops_per_step(model, T, B, r if teacher else 0)
      cost.draws[sizer.size(cfg.data.target, cfg, cell.workdir)] = steps * (B - r) * T
      kind = cfg.replay.kind
      if r and kind == "real":
        cost.draws[sizer.size(cfg.data.base, cfg, cell.workdir)] = steps * r * T
      elif r and kind == "self" and cfg.replay.samples:
        key = _self_corpus(cell, cfg, by_id, sizer)
        cost.draws[key] = steps * r * T
      elif r and kind == "self":  # sampled on the fly: one forward per generated token, never reused
        cost.flops += steps * r * T * model_lib.flops_per_token(model, T) / 3
      cost.note = "teacher forward counted" if teacher else ""
    out.append(cost)
  return StudyCost(out, sizer.corpora)


def _replay_cost(cell: Cell, by_id: dict[str, Cell]) -> CellCost:
  """Sampling `tokens` tokens from the stage's checkpoint: one forward per token (KV cache, full context)."""
  pre = by_id.get(cell.needs[0]) if cell.needs else None
  run = pre.config if pre is not None and pre.config else _read_json(Path(cell.config["workdir"]) / "config.json")
  tokens = int(cell.config["tokens"])
  if not run:
    return CellCost(cell, tokens, 0.0, note="model unknown")
  cfg = _cfg(run)
  model = _model(cfg)
  rows = -(-tokens // cfg.model.max_len)
  return CellCost(cell, rows * cfg.model.max_len,
                  rows * cfg.model.max_len * model_lib.flops_per_token(model, cfg.model.max_len) / 3,
                  note="sampling")


def _self_corpus(cell: Cell, cfg, by_id: dict[str, Cell], sizer: _Sizer) -> str:
  """The key of the self-generated samples an adapt cell reads: the size its replay cell writes."""
  label = f"self-replay({Path(cfg.replay.samples).parent.parent.name})"
  key = f"{label}|{cfg.replay.samples}"
  if key not in sizer.corpora:
    made_by = [by_id[n] for n in cell.needs if n.startswith("replay/") and n in by_id]
    if made_by:
      rows = -(-int(made_by[0].config["tokens"]) // cfg.model.max_len)
      sizer.corpora[key] = Corpus(label, rows * cfg.model.max_len, "the replay cell's tokens (study.replay_tokens)")
    else:
      info = _read_json(Path(cfg.replay.samples) / "dataset_info.json")
      n = (info or {}).get("splits", {}).get("train", {}).get("num_examples")
      sizer.corpora[key] = (Corpus(label, n * cfg.model.max_len, "its dataset_info.json") if n else
                            Corpus(label, None, "unknown: the samples dataset is not there yet"))
  return key


def _repeats(cost: StudyCost, max_epochs: float) -> list[tuple[str, str, float]]:
  return [(c.cell.id, key, e) for c in cost.cells for key, e in cost.epochs(c).items()
          if e is not None and e > max_epochs and not cost.corpora[key].by_design]


def repeats(cost: StudyCost, max_epochs: float = MAX_EPOCHS) -> list[tuple[str, str, float]]:
  """(cell, corpus, epochs) of every run that reads a corpus more than `max_epochs` times (not by design)."""
  return [(cell, cost.corpora[key].label, e) for cell, key, e in _repeats(cost, max_epochs)]


def to_json(cost: StudyCost) -> dict[str, Any]:
  """Every cell's tokens, FLOPs and corpus epochs, and each corpus's size: the runner writes it as
  DIR/cost.json, from which the reports state the epochs each stage consumed."""
  return {
      "corpora": {k: {"label": c.label, "tokens": c.tokens, "how": c.how, "by_design": c.by_design,
                      "estimated": c.estimated} for k, c in cost.corpora.items()},
      "cells": [{"cell": c.cell.id, "kind": c.cell.kind, "tokens": c.tokens, "flops": c.flops,
                 "epochs": {cost.corpora[k].label: e for k, e in cost.epochs(c).items()}} for c in cost.cells],
  }


def check_repeats(cost: StudyCost, max_epochs: float = MAX_EPOCHS) -> None:
  """Raises CorpusRepeated when a run would read a corpus more than `max_epochs` times."""
  found = _repeats(cost, max_epochs)
  if not found:
    return
  cell, key, e = max(found, key=lambda x: x[2])
  size = cost.corpora[key]
  cells = sorted({f[0] for f in found})
  more = f" ({len(cells)} runs in all: {', '.join(cells[:4])}{', …' if len(cells) > 4 else ''})"
  raise CorpusRepeated(
      f"{cell} would read the corpus {size.label} {e:.1f} times (more than {max_epochs:g} epochs; its size: "
      f"{_num(size.tokens)} tokens, {size.how}){more if len(cells) > 1 else ''}. Give the study a larger corpus (or "
      "state its true size in the source's size_tokens), or fewer tokens; `--status` lists every cell's epochs")


def device_hours(cost: StudyCost, accelerator_name: str = "h100", mfu: float | None = None
                 ) -> tuple[list[float | None], str]:
  """Hours per cell (chip-hours summed over devices) and a sentence saying how they were obtained. `mfu` None:
  DEFAULT_MFU on an accelerator, CPU_MFU on the CPU."""
  key, label, peak = accelerator(accelerator_name)
  mfu = mfu or (CPU_MFU if key == "cpu" else DEFAULT_MFU)
  if not 0 < mfu <= 1:
    raise ValueError(f"--mfu={mfu}: must be in (0, 1]")
  if peak is not None:
    return ([c.flops / (peak * mfu) / 3600 for c in cost.cells],
            f"{label} ({peak / 1e12:g} TFLOP/s bf16 peak) at MFU {mfu:g}")
  measured = [c for c in cost.cells if c.wall_seconds and c.flops]
  if measured:
    rate = sum(c.flops for c in measured) / sum(c.wall_seconds for c in measured)
    how = (f"CPU: measured wall time of the {len(measured)} finished cells; the others at the "
           f"{rate / 1e9:.3g} GFLOP/s those achieved")
  else:
    rate = metrics_lib.measure_matmul_peak() * mfu
    how = f"CPU: no cell finished yet; at the measured matmul peak × an MFU of {mfu:g} = {rate / 1e9:.3g} GFLOP/s"
  return [c.wall_seconds / 3600 if c.wall_seconds else c.flops / rate / 3600 for c in cost.cells], how


def _num(x: float | None) -> str:
  if x is None:
    return "?"
  for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if abs(x) >= scale:
      return f"{x / scale:.3g}{unit}"
  return f"{x:.3g}"


def table(cost: StudyCost, accelerator_name: str = "h100", mfu: float | None = None,
          max_epochs: float = MAX_EPOCHS) -> str:
  """Per cell: tokens, FLOPs, device-hours, epochs of each corpus; totals; the corpora's sizes; flagged repeats."""
  hours, how = device_hours(cost, accelerator_name, mfu)
  unit = accelerator(accelerator_name)[0] + "-h"
  width = max([len(c.cell.id) for c in cost.cells] + [4])
  lines = [f"cost: {how}", f"  {'cell':<{width}} {'tokens':>8} {'FLOPs':>9} {unit:>10}  epochs (corpus: times read)"]
  for c, h in zip(cost.cells, hours):
    parts = []
    for key, e in cost.epochs(c).items():
      corpus = cost.corpora[key]
      mark = ("" if e is None or e <= max_epochs else " (by design)" if corpus.by_design else
              f" > {max_epochs:g}: REFUSED")
      parts.append(f"{corpus.label} {'?' if e is None else f'{e:.3g}'}{mark}")
    if c.note and not parts:
      parts.append(f"({c.note})")
    lines.append(f"  {c.cell.id:<{width}} {_num(c.tokens):>8} {c.flops:>9.3g} {h or 0:>10.3g}  {', '.join(parts)}")
  lines.append(f"  {'total':<{width}} {_num(cost.tokens):>8} {cost.flops:>9.3g} {sum(h or 0 for h in hours):>10.4g}"
               "  (tokens: trained; FLOPs and hours include sampling)")
  lines.append("corpora (size in tokens as the loader packs them):")
  for corpus in cost.corpora.values():
    flag = " [estimated]" if corpus.estimated else ""
    lines.append(f"  {corpus.label}: {_num(corpus.tokens)}{flag} — {corpus.how}")
  found = repeats(cost, max_epochs)
  if found:
    worst = max(found, key=lambda f: f[2])
    lines.append(f"REPEATS: {len(found)} run{'s read' if len(found) > 1 else ' reads'} a corpus more than "
                 f"{max_epochs:g} times; the runner refuses to start the study (most: {worst[0]} reads {worst[1]} "
                 f"{worst[2]:.1f} times)")
  else:
    lines.append(f"repeats: no run reads a corpus more than {max_epochs:g} times")
  return "\n".join(lines)
