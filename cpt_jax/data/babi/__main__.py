"""CLI: `python -m cpt_jax.data.babi generate ...` writes bAbI files; `... stats PATH` describes them."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cpt_jax.data.babi import fileformat
from cpt_jax.data.babi.generate import generate_stories
from cpt_jax.data.babi.stats import report
from cpt_jax.data.babi.vocab import MODES


def _task_arg(value: str) -> list[int]:
  if value == "all":
    return list(range(1, 21))
  if not value.isdigit() or not 1 <= int(value) <= 20:
    raise argparse.ArgumentTypeError(f"--task must be a number from 1 to 20 or 'all', got {value!r}")
  return [int(value)]


def _positive(value: str) -> int:
  if not value.isdigit() or int(value) < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
  return int(value)


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m cpt_jax.data.babi", description=__doc__)
  sub = p.add_subparsers(dest="command", required=True)
  g = sub.add_parser("generate", help="write bAbI stories in the original text format")
  g.add_argument("--task", type=_task_arg, required=True, help="1..20 or 'all'")
  g.add_argument("--mode", choices=MODES, default="original")
  g.add_argument("--num-stories", type=_positive, default=1000)
  g.add_argument("--seed", type=int, default=0)
  g.add_argument("--split", default="train", help="the split word in file names (qa1_..._<split>.txt)")
  g.add_argument("--out", required=True,
                 help="a directory (one qa<N>_<name>_<split>.txt per task), or a .txt file for one task")
  s = sub.add_parser("stats", help="story lengths, answers, majority baseline, vocabulary sizes")
  s.add_argument("path", help="a bAbI .txt file or a directory of qa<N>_*.txt files")
  return p


def main(argv=None) -> int:
  args = parser().parse_args(argv)
  if args.command == "stats":
    try:
      print(report(args.path))
    except (FileNotFoundError, fileformat.FormatError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    return 0
  out = Path(args.out)
  if out.suffix == ".txt" and len(args.task) > 1:
    print("error: --task all writes one file per task: give a directory as --out", file=sys.stderr)
    return 2
  start = time.perf_counter()
  for task in args.task:
    path = out if out.suffix == ".txt" else out / fileformat.task_filename(task, args.split)
    path.parent.mkdir(parents=True, exist_ok=True)
    fileformat.write_file(path, generate_stories(task, args.mode, args.num_stories, args.seed))
  print(f"wrote {len(args.task)} file(s) to {out} in {time.perf_counter() - start:.1f}s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
