"""Writes tests/fixtures/hf_gpt2_tiny: a tiny random GPT-2 in the Hugging Face format, and its reference outputs.

    pip install torch transformers tokenizers safetensors   # only for this script; the tests need none of them
    python tools/make_hf_fixture.py [--out tests/fixtures/hf_gpt2_tiny]

What it writes: `config.json` + `model.safetensors` (GPT2LMHeadModel, 2 layers, width 64, 4 heads, context 64,
seeded), `tokenizer.json` (byte-level BPE with GPT-2's `<|endoftext|>` as BOS/EOS, trained on the text below),
`corpus.txt` (that text) and `reference.json`: 65 token ids (`<|endoftext|>` + a fixed text), the model's logits
on the first 64 from `transformers` (float32), and the mean next-token loss of those logits against ids 1..64
(one full row of context 64, as cpt_jax evaluates it). cpt_jax's importer is tested against these numbers
without `transformers` or `torch` installed.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SUBJECTS = "the old king|a young girl|my brother|the farmer|her mother|the small dog|a tired soldier".split("|")
VERBS = "saw|loved|followed|found|called|helped|watched|feared".split("|")
OBJECTS = "the river|a white horse|the castle|his friend|the green field|a quiet town|the sea".split("|")
TAILS = "at dawn|in the rain|before supper|with great care|without a word|as the bells rang".split("|")
REFERENCE_TEXT = ("The old king saw the river at dawn. A young girl found a white horse in the rain. My brother "
                  "followed the small dog before supper. Her mother called his friend without a word. The farmer "
                  "watched the green field as the bells rang. A tired soldier feared the sea with great care.")


def corpus(n_docs: int = 200, sentences: int = 8) -> list[str]:
  rng = random.Random(0)
  docs = []
  for _ in range(n_docs):
    out = []
    for _ in range(sentences):
      s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}."
      out.append(s[0].upper() + s[1:])
    docs.append(" ".join(out))
  return docs


def train_tokenizer(docs: list[str], vocab_size: int) -> Tokenizer:
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(docs, trainer)
  return tok


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/hf_gpt2_tiny")
  args = ap.parse_args()
  args.out.mkdir(parents=True, exist_ok=True)
  docs = corpus()
  (args.out / "corpus.txt").write_text("\n".join(docs) + "\n")
  tok = train_tokenizer(docs, vocab_size=384)
  tok.save(str(args.out / "tokenizer.json"))
  eot = tok.token_to_id("<|endoftext|>")
  torch.manual_seed(0)
  cfg = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                bos_token_id=eot, eos_token_id=eot, activation_function="gelu_new",
                                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
  model = transformers.GPT2LMHeadModel(cfg).eval()
  with torch.no_grad():  # a random init has tiny biases and unit LayerNorms: perturb them so the test sees them
    for name, p in model.named_parameters():
      if name.endswith("bias") or ".ln_" in name or "ln_f" in name:
        p.add_(0.05 * torch.randn_like(p))
  model.save_pretrained(args.out, safe_serialization=True)
  ids = ([eot] + tok.encode(REFERENCE_TEXT).ids)[:cfg.n_positions + 1]
  assert len(ids) == cfg.n_positions + 1, "the reference text must fill one row"
  with torch.no_grad():
    logits = model(torch.tensor([ids[:-1]])).logits[0].float()
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]))
  logits_6 = np.round(logits.numpy().astype(np.float64), 6)  # 6 decimals: the tests compare within 1e-4
  reference = {"text": REFERENCE_TEXT, "ids": ids, "loss": float(loss), "logits": logits_6.tolist(),
               "transformers": transformers.__version__, "torch": torch.__version__}
  (args.out / "reference.json").write_text(json.dumps(reference))
  print(f"wrote {args.out}: vocab {cfg.vocab_size}, {len(ids)} reference tokens, loss {reference['loss']:.4f}")


if __name__ == "__main__":
  main()
