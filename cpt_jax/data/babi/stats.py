"""Statistics of bAbI files: story lengths, answer distribution, majority-answer baseline, how many
distinct names / places / objects the stories use (the synthetic mode's diversity claim), and the share of
rendered examples longer than a model's context."""

from __future__ import annotations

import collections
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

from cpt_jax.data.babi import fileformat
from cpt_jax.data.babi.score import normalize
from cpt_jax.data.babi.vocab import ORIGINAL, SYNTHETIC

_POOLS = {
    "names": set(ORIGINAL.names) | set(SYNTHETIC.names),
    "places": set(ORIGINAL.rooms + ORIGINAL.outdoor + SYNTHETIC.rooms + SYNTHETIC.outdoor),
    "objects": set(ORIGINAL.objects + SYNTHETIC.objects),
}


def truncated_share(records: Iterable[dict], encode: Callable[[str], Sequence[int]], context_length: int,
                    special_tokens: int = 1) -> dict[int | str, dict]:
  """Per task (and "all"): how many rendered records are longer than `context_length` tokens, so a study
  can state the share it trains or scores on cut stories. A record's length is
  len(encode(prompt)) + len(encode(completion)) + `special_tokens`: the pipeline wraps it in BOS and EOS
  and shifts by one, so 1 matches what it cuts (`_TokenizeExample`). Returns {task: {"examples",
  "truncated", "share", "longest"}}, tasks in order, "all" last."""
  if context_length < 1:
    raise ValueError(f"context_length must be >= 1, got {context_length}")
  counts: dict[int | str, dict] = {}
  for record in records:
    n = len(encode(record["prompt"])) + len(encode(record["completion"])) + special_tokens
    for key in (record["task"], "all"):
      c = counts.setdefault(key, {"examples": 0, "truncated": 0, "longest": 0})
      c["examples"] += 1
      c["truncated"] += n > context_length
      c["longest"] = max(c["longest"], n)
  order = sorted(k for k in counts if k != "all") + (["all"] if counts else [])
  return {k: {**counts[k], "share": counts[k]["truncated"] / counts[k]["examples"]} for k in order}


def babi_files(path: str | os.PathLike) -> list[Path]:
  path = Path(path)
  files = sorted(path.glob("qa*.txt"), key=lambda p: (fileformat.task_of_filename(p) or 0, p.name)) \
      if path.is_dir() else [path]
  if not files or not all(f.exists() for f in files):
    raise FileNotFoundError(f"no bAbI files (qa<N>_*.txt) at {path}")
  return files


def vocabulary(stories) -> dict[str, set[str]]:
  """The pool words (one- to three-word phrases) that occur in the stories' text."""
  grams = set()
  for story in stories:
    for line in story:
      words = re.findall(r"[A-Za-z]+", line.text)
      for n in (1, 2, 3):
        grams.update(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
  return {kind: grams & pool for kind, pool in _POOLS.items()}


def file_stats(stories, task: int | None) -> dict:
  lengths = [len(s) for s in stories]
  answers = collections.Counter(normalize(q.answer, task) for s in stories for q in s if q.is_question)
  n = sum(answers.values())
  top, top_n = answers.most_common(1)[0] if answers else ("", 0)
  return {
      "stories": len(stories), "questions": n,
      "length": (min(lengths, default=0), sum(lengths) / max(1, len(lengths)), max(lengths, default=0)),
      "answers": answers, "majority": (top, top_n / max(1, n)),
      "vocab": {k: len(v) for k, v in vocabulary(stories).items()},
  }


def report(path: str | os.PathLike) -> str:
  rows, all_stories = [], []
  for f in babi_files(path):
    stories = fileformat.read_file(f)
    all_stories += stories
    task = fileformat.task_of_filename(f)
    s = file_stats(stories, task)
    lo, mean, hi = s["length"]
    top5 = ", ".join(f"{a} {c / max(1, s['questions']):.0%}" for a, c in s["answers"].most_common(5))
    rows.append(f"{f.name}\n  stories {s['stories']}  questions {s['questions']}  lines/story min {lo} "
                f"mean {mean:.1f} max {hi}\n  majority-answer baseline {s['majority'][1]:.1%} "
                f"({s['majority'][0]!r})  distinct answers {len(s['answers'])}\n  answers: {top5}\n"
                f"  names {s['vocab']['names']}  places {s['vocab']['places']}  objects {s['vocab']['objects']}")
  totals = {k: len(v) for k, v in vocabulary(all_stories).items()}
  rows.append(f"ALL FILES: names {totals['names']}  places {totals['places']}  objects {totals['objects']}")
  return "\n".join(rows)
