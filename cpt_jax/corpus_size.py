"""How many tokens a corpus holds as the loader packs it, measured once per (corpus, tokenizer): the
denominator of a study's epochs (cpt_jax/study_cost.py).

  corpus (english, spanish)  train-split characters (the prepared dataset's corpus_stats.json, else the sizes of
                             docs/corpora.md) × tokens per character measured with the run's tokenizer on a sample
                             of the corpus, else taken from a table ("estimated")
  babi                       train stories × rows per story, from a generated sample of stories tokenized the
                             same way (packing padding included)
  hf, tfds, records, files   the source's `size_tokens` (config.py); unknown when 0
`size_tokens` > 0 overrides the measurement for any source.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

from cpt_jax import paths
from cpt_jax.data import corpora, records, sources
from cpt_jax.data.tokenizer import load_tokenizer, run_tokenizer_path

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


@dataclasses.dataclass
class Corpus:
  label: str
  tokens: float | None  # size in tokens as the loader packs it; None: unknown
  how: str  # where the size comes from
  by_design: bool = False  # a fixed pool repeated on purpose: reported, never refused
  estimated: bool = False


def source_label(src) -> str:
  if src.kind == "babi":
    tasks = "" if src.babi_tasks.strip() == "all" else f", tasks {src.babi_tasks}"
    return f"babi_{src.babi_mode}({src.babi_stories}/task{tasks})"
  if src.kind == "corpus":
    return src.name
  if src.kind == "hf" and src.name:
    cap = src.get("max_documents", 0)  # a capped slice is its own corpus
    # HuggingFaceFW/fineweb-edu:sample-100BT → fineweb-edu:sample-100BT
    return src.name.rsplit("/", 1)[-1] + (f"[:{cap}]" if cap else "")
  return f"{src.kind}:{src.name or src.path}"


def read_json(path) -> dict | None:
  try:
    return json.loads(paths.path(path).read_text())
  except (OSError, ValueError):
    return None


class Sizer:
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
    label = source_label(src)
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
    stats = read_json(corpora.stats_path(data_dir, src.name))
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
    train = babi_dataset.build_babi_splits(src.babi_mode, sample, 0, tasks,
                                           max_statements=sources.max_statements(src))["train"]
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
    return Corpus(source_label(src), rows_per_epoch * cfg.model.max_len, how,
                  by_design=src.babi_mode == "original", estimated=tok is None)


def _table_per_char(corpus: str, vocab: int) -> float:
  for limit, values in _TOKENS_PER_CHAR:
    if vocab <= limit:
      return values.get(corpus, values["english"])
  raise AssertionError("unreachable")
