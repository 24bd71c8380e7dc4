"""SentencePiece tokenizers trained from a corpus's training split.

Fixed special ids (pad 0, unk 1, bos 2, eos 3) so that every model, sampler and packer agrees on them;
byte fallback so any UTF-8 text round-trips.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Iterable, Sequence

import sentencepiece as spm

from cpt_jax import paths
from cpt_jax.data.records import DataError

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer:

  def __init__(self, path: str | os.PathLike):
    path = paths.path(path)
    if not path.exists():
      if path.name == "tokenizer.model" and path.parent.is_dir() and not (path.parent / "config.json").exists():
        raise DataError(f"{path.parent} is not the workdir of a cpt_jax run ({path.name} and config.json do not "
                        "exist there): init_from takes the --workdir of a pretraining run, data.tokenizer a .model "
                        "file")
      raise DataError(f"tokenizer model {path} does not exist; train one (it is made automatically from the "
                      "pretraining corpus when `data.tokenizer` is empty) or fix the path")
    if path.is_dir():
      hint = f" ({path / 'tokenizer.model'}?)" if (path / "tokenizer.model").exists() else ""
      raise DataError(f"tokenizer {path} is a directory; point data.tokenizer at a SentencePiece .model file{hint}")
    self.path = path
    self.model_bytes = path.read_bytes()  # read through epath: the model may be on GCS
    if not self.model_bytes:
      raise DataError(f"tokenizer {path} is empty (0 bytes); point data.tokenizer at a .model file made by cpt_jax, "
                      "or leave it empty to train one")
    try:
      self._sp = spm.SentencePieceProcessor(model_proto=self.model_bytes)
    except (RuntimeError, OSError):
      raise DataError(f"{path} is not a SentencePiece model (it does not parse: truncated, damaged or another "
                      "format); point data.tokenizer at a .model file made by cpt_jax, or leave it empty to train "
                      "one") from None
    if (self._sp.bos_id(), self._sp.eos_id(), self._sp.pad_id()) != (BOS, EOS, PAD):
      raise DataError(f"tokenizer {path} has bos/eos/pad ids {self._sp.bos_id()}/{self._sp.eos_id()}/"
                      f"{self._sp.pad_id()}; cpt_jax needs {BOS}/{EOS}/{PAD}. Retrain it with cpt_jax.")

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return self._sp.encode(list(texts))

  def decode(self, ids: Iterable[int]) -> str:
    return self._sp.decode([int(i) for i in ids if int(i) > EOS])

  def __repr__(self) -> str:
    return f"Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def train_tokenizer(texts: Iterable[str], out_path: str | os.PathLike, vocab_size: int,
                    model_type: str = "bpe", max_chars: int = 20_000_000) -> Tokenizer:
  """Trains on up to `max_chars` characters of `texts` and writes the model atomically."""
  out_path = paths.path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)

  def lines():
    seen = 0
    for text in texts:
      for line in text.split("\n"):
        line = line.strip()
        if line:
          seen += len(line)
          yield line
      if seen >= max_chars:
        return

  model = io.BytesIO()
  try:
    _train(lines(), model, vocab_size, model_type)
  except RuntimeError as e:
    raise DataError(f"training a {vocab_size}-token tokenizer failed: {str(e).splitlines()[-1][:300]}. With byte "
                    "fallback the vocabulary needs 256 byte pieces plus the corpus's characters: raise "
                    "data.vocab_size (≥ 512 is safe)") from None
  paths.write_bytes_atomic(out_path, model.getvalue())
  logging.info("trained a %d-token %s tokenizer -> %s", vocab_size, model_type, out_path)
  return Tokenizer(out_path)


def _train(lines, model, vocab_size, model_type):
  spm.SentencePieceTrainer.train(
      sentence_iterator=lines, model_writer=model, vocab_size=vocab_size, model_type=model_type,
      pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, byte_fallback=True, character_coverage=0.9995,
      num_threads=os.cpu_count() or 1, max_sentence_length=16384, train_extremely_large_corpus=False,
      minloglevel=2)


def copy_tokenizer(tok: Tokenizer, dest: str | os.PathLike) -> Tokenizer:
  """The tokenizer written to `dest` (atomically: a kill -9 never leaves half a model), unless it is there."""
  dest = paths.path(dest)
  if not (dest.exists() and dest.read_bytes() == tok.model_bytes):
    paths.write_bytes_atomic(dest, tok.model_bytes)
  return Tokenizer(dest)
