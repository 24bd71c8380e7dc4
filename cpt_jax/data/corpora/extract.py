"""Readers of the raw formats, each yielding cleaned documents of moderate size (about 1-20 KB).

Formats: SWORD zText Bible modules (one document per chapter), Gutenberg-style plain texts (chunks of
~8 KB at paragraph boundaries), the janeaustenr R lazy-load database (one document per chapter) and
`fortune` files (groups of 20 fortunes). Every reader returns plain `str` documents that went through
`normalize_text`: valid UTF-8, NFC, no control characters, no trailing spaces, at most one blank line.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import unicodedata
import warnings
import zlib
from pathlib import Path
from typing import Iterator

REPLACEMENT = "\ufffd"
CHUNK_TARGET, CHUNK_MIN, CHUNK_MAX = 8000, 4000, 16000
FORTUNES_PER_DOC = 20

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\ufeff]")


# ----------------------------------------------------------------------------------------------------------------
# Cleaning


def decode(raw: bytes) -> str:
  """UTF-8 with errors replaced; lines that are mostly undecodable are dropped, stray U+FFFD removed."""
  text = raw.decode("utf-8", errors="replace")
  if REPLACEMENT not in text:
    return text
  kept = []
  for line in text.split("\n"):
    bad = line.count(REPLACEMENT)
    if bad and (bad >= 3 or bad * 10 > len(line.strip())):
      continue
    kept.append(line.replace(REPLACEMENT, ""))
  return "\n".join(kept)


def normalize_text(text: str) -> str:
  """NFC; CR/LF and tabs normalised; control characters removed; runs of inner spaces collapsed (leading
  indentation kept, for verse); trailing spaces stripped; at most one blank line in a row; trimmed."""
  text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " "))
  text = _CONTROL.sub("", text)
  lines = []
  for line in text.split("\n"):
    indent = len(line) - len(line.lstrip(" "))
    body = re.sub(r" {2,}", " ", line.strip(" "))
    lines.append(" " * min(indent, 8) + body if body else "")
  return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


_GUT_START = re.compile(
    r"^\s*(\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*"
    r"|\*END\*THE SMALL PRINT.*|.*\*\*\*START\*\*THE SMALL PRINT.*)$",
    re.I | re.M)
_GUT_END = re.compile(
    r"^\s*(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*"
    r"|End of (the )?Project Gutenberg.*|\*\*\*\s*END OF THE PROJECT.*)$",
    re.I | re.M)


def strip_gutenberg(text: str) -> str:
  """Drops a Project Gutenberg header (through the START / small-print line) and footer (from the END line)."""
  starts = list(_GUT_START.finditer(text))
  if starts:
    text = text[starts[-1].end():]
  end = _GUT_END.search(text)
  if end:
    text = text[:end.start()]
  return text


def chunk_paragraphs(text: str, target: int = CHUNK_TARGET, lo: int = CHUNK_MIN, hi: int = CHUNK_MAX) -> list[str]:
  """Splits at blank lines into chunks of about `target` chars (a paragraph longer than `hi` is split at line
  ends); a final chunk shorter than `lo` is merged into the previous one when that stays under `hi`."""
  paras = []
  for para in re.split(r"\n\s*\n", text):
    para = para.strip("\n")
    if not para.strip():
      continue
    while len(para) > hi:
      cut = para.rfind("\n", 0, hi)
      cut = cut if cut > 0 else hi
      paras.append(para[:cut])
      para = para[cut:].lstrip("\n")
    paras.append(para)
  chunks, cur = [], []
  size = 0
  for para in paras:
    if cur and size + len(para) > hi:
      chunks.append("\n\n".join(cur))
      cur, size = [], 0
    cur.append(para)
    size += len(para) + 2
    if size >= target:
      chunks.append("\n\n".join(cur))
      cur, size = [], 0
  if cur:
    last = "\n\n".join(cur)
    if chunks and len(last) < lo and len(chunks[-1]) + len(last) + 2 <= hi:
      chunks[-1] += "\n\n" + last
    else:
      chunks.append(last)
  return chunks


# ----------------------------------------------------------------------------------------------------------------
# Gutenberg-style plain texts (Shakespeare, Milton)


def gutenberg_documents(path: str | os.PathLike, source: str) -> Iterator[dict]:
  path = Path(path)
  text = normalize_text(strip_gutenberg(decode(path.read_bytes())))
  slug = re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", path.stem.lower().removesuffix("_gut"))).strip("_")
  for i, chunk in enumerate(chunk_paragraphs(text)):
    yield {"text": chunk, "source": source, "doc_id": f"{source}/{slug}/{i:03d}"}


# ----------------------------------------------------------------------------------------------------------------
# SWORD zText modules (CompressType=ZIP, BlockType=BOOK or CHAPTER, OSIS markup)
#
# Per testament (`ot`, `nt`): `.bzs` holds 12-byte block records <offset, compressed size, uncompressed size>
# into `.bzz` (zlib streams); `.bzv` holds 10-byte verse records <block, offset in block, size> (little
# endian, uint32/uint32/uint16), one per verse slot of the versification, including book and chapter
# headings; size 0 means the slot is empty. The OSIS text carries `<chapter osisID="Gen.1" sID=.../>` markers,
# which is where documents are cut, so no versification table is needed.

_NOTE = re.compile(r"<note\b[^>]*>.*?</note>|<note\b[^>]*/>", re.S)
_INLINE = re.compile(r"</?(w|transChange|divineName|q|seg|foreign|name|catchWord|rdg|hi|reference|abbr|"
                     r"added|inscription|milestone|index)\b[^>]*>")
_LINE_BREAK = re.compile(r'<l\b[^>]*\beID="[^"]*"[^>]*/>|<lb\b[^>]*/>|<div\b[^>]*\bsID="[^"]*"[^>]*type="x-p"[^>]*/>|'
                         r'<div\b[^>]*type="x-p"[^>]*\bsID="[^"]*"[^>]*/>|</title>|</speaker>|</item>')
_ANY_TAG = re.compile(r"<[^>]*>")
_DANGLING_TAG = re.compile(r"<[^<>]*$")
_CHAPTER_TAG = re.compile(r"<chapter\b[^>]*>")
_SID = re.compile(r'\bsID="([^"]+)"')


def osis_to_text(markup: str) -> str:
  """OSIS verse markup to plain text: notes dropped; word-level tags removed; line, paragraph and heading ends
  become newlines; every other tag becomes a space (so no two words are glued together)."""
  text = _NOTE.sub(" ", markup)
  text = _INLINE.sub("", text)
  text = _LINE_BREAK.sub("\n", text)
  text = _ANY_TAG.sub(" ", text)
  text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'")
  text = text.replace("&amp;", "&")
  text = "\n".join(re.sub(r"\s+", " ", line).strip() for line in text.split("\n"))
  return text


def sword_entries(module_dir: str | os.PathLike) -> Iterator[str]:
  """Raw markup of every non-empty verse slot of a zText module, in order (OT then NT)."""
  module_dir = Path(module_dir)
  found = False
  for testament in ("ot", "nt"):
    paths = [module_dir / f"{testament}.{ext}" for ext in ("bzs", "bzv", "bzz")]
    if not all(p.exists() for p in paths):
      continue
    found = True
    bzs, bzv, bzz = (p.read_bytes() for p in paths)
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs) - 11, 12)]
    cache: dict[int, bytes] = {}
    for i in range(0, len(bzv) - 9, 10):
      block, offset, size = struct.unpack_from("<IIH", bzv, i)
      if size == 0 or block >= len(blocks):
        continue
      if block not in cache:
        cache.clear()  # entries are in block order; one decompressed block at a time
        start, csize, _ = blocks[block]
        cache[block] = zlib.decompress(bzz[start:start + csize])
      # A dangling tag start: entries are cut at 64 KiB (uint16 size), which a few module entries exceed.
      yield _DANGLING_TAG.sub("", decode(cache[block][offset:offset + size]))
  if not found:
    raise FileNotFoundError(f"no SWORD zText files ({{ot,nt}}.bz{{s,v,z}}) in {module_dir}")


def sword_documents(module_dir: str | os.PathLike, source: str, min_front: int = 1000) -> Iterator[dict]:
  """One document per chapter, id `source/<osisID>` (e.g. `kjv/Gen.1`), cut at the OSIS `<chapter sID/>` and
  `<chapter eID/>` markers. Text between chapters (book titles, introductions) goes with the next chapter, or
  is its own document `source/front.N` when it is at least `min_front` chars (the WEB preface)."""
  markup = " ".join(sword_entries(module_dir))
  pos, current, prefix, body, pending, fronts = 0, None, "", [], [], 0
  for m in _CHAPTER_TAG.finditer(markup + '<chapter eID="end"/>'):
    (body if current is not None else pending).append(markup[pos:m.start()])
    pos = m.end()
    if current is not None:
      text = normalize_text(prefix + "\n" + osis_to_text("".join(body)))
      if text:
        yield {"text": text, "source": source, "doc_id": f"{source}/{current}"}
      current, body = None, []
    start = _SID.search(m.group(0))
    if start:
      prefix = normalize_text(osis_to_text("".join(pending)))
      pending = []
      if len(prefix) >= min_front:
        fronts += 1
        yield {"text": prefix, "source": source, "doc_id": f"{source}/front.{fronts}"}
        prefix = ""
      current = start.group(1)


# ----------------------------------------------------------------------------------------------------------------
# Jane Austen: the janeaustenr R package's lazy-load database (data/Rdata.rdx + Rdata.rdb), read with `rdata`

_AUSTEN_CHAPTER = re.compile(r"^\s*(CHAPTER|Chapter)\s+([IVXLC]+|\d+)\.?\s*$")


def austen_novels(data_dir: str | os.PathLike) -> dict[str, list[str]]:
  """{novel name: lines} from `janeaustenr/data`. The .rdx index is a gzipped R list whose `variables` maps
  each name to (offset, length) in the .rdb; each .rdb entry is a 4-byte length then a zlib stream of an
  R-serialised character vector."""
  import rdata  # ~0.7 s to import (pandas, xarray); only Jane Austen's novels are R data

  data_dir = Path(data_dir)

  def parse(raw: bytes):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # "Unknown file type: assumed RDS": lazy-load entries have no magic
      return rdata.conversion.convert(rdata.parser.parse_data(raw))

  index = parse(gzip.decompress((data_dir / "Rdata.rdx").read_bytes()))
  rdb = (data_dir / "Rdata.rdb").read_bytes()
  novels = {}
  for name, (offset, length) in sorted(index["variables"].items()):
    offset, length = int(offset), int(length)
    lines = parse(zlib.decompress(rdb[offset + 4:offset + length]))
    novels[str(name)] = [str(line) for line in lines.tolist()]
  return novels


def austen_documents(data_dir: str | os.PathLike, source: str = "austen") -> Iterator[dict]:
  """One document per chapter (`austen/emma/ch001`); the title page goes with chapter 1."""
  for name, lines in austen_novels(data_dir).items():
    chapters: list[list[str]] = [[]]
    for line in lines:
      if _AUSTEN_CHAPTER.match(line) and any(c.strip() for c in chapters[-1]) and not _only_front(chapters):
        chapters.append([])
      chapters[-1].append(line)
    for i, chapter in enumerate(chapters, 1):
      text = normalize_text(decode("\n".join(chapter).encode("utf-8", "replace")))
      if text:
        yield {"text": text, "source": source, "doc_id": f"{source}/{name}/ch{i:03d}"}


def _only_front(chapters: list[list[str]]) -> bool:
  """True while the first chunk holds only the title page (no chapter heading yet)."""
  return len(chapters) == 1 and not any(_AUSTEN_CHAPTER.match(line) for line in chapters[0])


# ----------------------------------------------------------------------------------------------------------------
# fortune(6) files: entries separated by lines holding only "%"


def fortune_entries(path: str | os.PathLike) -> list[str]:
  text = decode(Path(path).read_bytes()).replace("\r\n", "\n")
  entries = [normalize_text(e) for e in re.split(r"^%[ \t]*$", text, flags=re.M)]
  return [e for e in entries if e]


def fortune_documents(path: str | os.PathLike, source: str, per_doc: int = FORTUNES_PER_DOC) -> Iterator[dict]:
  path = Path(path)
  name = path.name.removesuffix(".fortunes")
  entries = fortune_entries(path)
  for i in range(0, len(entries), per_doc):
    yield {"text": "\n\n".join(entries[i:i + per_doc]), "source": source,
           "doc_id": f"{source}/{name}/{i // per_doc:03d}"}
