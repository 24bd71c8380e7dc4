"""Loads an exported directory with `transformers` and compares its logits with the fixture's reference.

    python -m cpt_jax.hf import --model tests/fixtures/hf_gpt2_tiny --workdir /tmp/w
    python -m cpt_jax.hf export --workdir /tmp/w --out /tmp/export
    python tools/check_hf_export.py /tmp/export          # in an environment with torch and transformers

Prints the largest absolute logit difference (exit 1 above 1e-4) and the versions used. tests/test_hf.py runs the
same check when transformers and torch are importable.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers

REFERENCE = Path(__file__).resolve().parents[1] / "tests/fixtures/hf_gpt2_tiny/reference.json"


def main() -> int:
  export = sys.argv[1]
  ref = json.loads(REFERENCE.read_text())
  model = transformers.GPT2LMHeadModel.from_pretrained(export).eval()
  tok = transformers.AutoTokenizer.from_pretrained(export)
  with torch.no_grad():
    logits = model(torch.tensor([ref["ids"][:-1]])).logits[0].numpy()
  diff = float(np.max(np.abs(logits - np.asarray(ref["logits"]))))
  same_ids = tok(ref["text"])["input_ids"][:20] == ref["ids"][1:21]
  print(f"max |logit difference| = {diff:.2e}; tokenizer ids match: {same_ids}; transformers "
        f"{transformers.__version__}, torch {torch.__version__}")
  return 0 if diff <= 1e-4 and same_ids else 1


if __name__ == "__main__":
  sys.exit(main())
