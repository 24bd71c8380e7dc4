"""Tokenizers: SentencePiece models trained from a corpus's training split, or a Hugging Face `tokenizer.json`.

Trained SentencePiece models have fixed special ids (pad 0, unk 1, bos 2, eos 3) and byte fallback so any
UTF-8 text round-trips. A `tokenizer.json` (GPT-2's byte-level BPE, say) brings its own ids: BOS/EOS/PAD
come from the tokenizer (GPT-2's `<|endoftext|>` is both its BOS and its EOS). Packers, samplers and the
replay generator read `bos_id` / `eos_id` / `pad_id` from the tokenizer, never a fixed id.
A run keeps its tokenizer in its workdir as `tokenizer.model` or `tokenizer.json` (`run_tokenizer_path`).
"""

from __future__ import annotations

import io
import logging
import os
import json
from typing import Iterable, Sequence

import sentencepiece as spm
from tokenizers import Tokenizer as _HFTokenizer

from cpt_jax import paths
from cpt_jax.data.records import DataError

PAD, UNK, BOS, EOS = 0, 1, 2, 3


SP_FILE, HF_FILE = "tokenizer.model", "tokenizer.json"
_HF_SPECIALS = (("<|endoftext|>", "<|endoftext|>"), ("<s>", "</s>"), ("<bos>", "<eos>"), ("[CLS]", "[SEP]"))


class Tokenizer:
  """A SentencePiece model (cpt_jax's own, trained from the corpus)."""

  file_name = SP_FILE
  bos_id, eos_id, pad_id = BOS, EOS, PAD
  special_ids = frozenset((PAD, UNK, BOS, EOS))  # never text: what a probe of random tokens leaves out

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

  def save_as(self, directory: str | os.PathLike) -> None:
    """The tokenizer file into `directory` (for an exported model)."""
    paths.write_bytes_atomic(paths.path(directory) / self.file_name, self.model_bytes)

  def __repr__(self) -> str:
    return f"{type(self).__name__}({str(self.path)!r}, vocab_size={self.vocab_size})"


class HFTokenizer(Tokenizer):
  """A Hugging Face `tokenizer.json` (the `tokenizers` library); special ids from its added tokens."""

  file_name = HF_FILE

  def __init__(self, path: str | os.PathLike):  # pylint: disable=super-init-not-called
    path = paths.path(path)
    if not path.is_file():
      raise DataError(f"tokenizer {path} does not exist or is not a file; give a tokenizer.json")
    self.path, self.model_bytes = path, path.read_bytes()
    try:
      self._tok = _HFTokenizer.from_str(self.model_bytes.decode("utf-8"))
    except (UnicodeDecodeError, Exception) as e:  # pylint: disable=broad-except  # tokenizers raises its own types
      raise DataError(f"{path} is not a Hugging Face tokenizer.json ({str(e).splitlines()[0][:160]}); give the "
                      "tokenizer.json of the model") from None
    vocab = self._tok.get_vocab(with_added_tokens=True)
    config = json.loads(self.model_bytes)
    bos = eos = None
    for b, e in _HF_SPECIALS:
      if b in vocab and e in vocab:
        bos, eos = vocab[b], vocab[e]
        break
    if bos is None:
      raise DataError(f"{path} defines none of the BOS/EOS token pairs {[p for p in _HF_SPECIALS]}; cpt_jax prompts "
                      "self-generated replay with BOS and ends documents with EOS")
    pad = (config.get("padding") or {}).get("pad_id")
    self.bos_id, self.eos_id, self.pad_id = bos, eos, eos if pad is None else int(pad)
    self._specials = {t["id"] for t in config.get("added_tokens", []) if t.get("special")}
    self.special_ids = frozenset(self._specials | {self.bos_id, self.eos_id, self.pad_id})

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids: Iterable[int]) -> str:
    return self._tok.decode([int(i) for i in ids if int(i) not in self._specials])


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
  """A SentencePiece `.model` or a Hugging Face `.json` tokenizer, by file name."""
  return HFTokenizer(path) if str(path).endswith(".json") else Tokenizer(path)


def run_tokenizer_path(workdir: str | os.PathLike):
  """The tokenizer file a run keeps in its workdir (tokenizer.json if it has one, else tokenizer.model)."""
  hf = paths.path(workdir) / HF_FILE
  return hf if hf.exists() else paths.path(workdir) / SP_FILE


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


def copy_tokenizer(tok: Tokenizer, workdir: str | os.PathLike) -> Tokenizer:
  """The tokenizer written into `workdir` under its kind's file name (atomically: a kill -9 never leaves half a
  model), unless it is there."""
  dest = paths.path(workdir) / tok.file_name
  if not (dest.exists() and dest.read_bytes() == tok.model_bytes):
    paths.write_bytes_atomic(dest, tok.model_bytes)
  return load_tokenizer(dest)
