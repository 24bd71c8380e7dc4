"""Study 2 (seed 001, "Forgetting in LMs: capacity, optimization, self-generated replay"): English → Spanish.

No replay vs real replay (the English corpus) vs self-generated replay (samples of the frozen start model),
next-token loss vs KL(teacher‖student) (Marek et al.'s regularizer: target mean + λ·replay mean), a λ sweep of
self-generated KL replay; capacity: the same adaptations from a model pretrained to 20 tokens per parameter
(Chinchilla) and one pretrained to 500 (25× more, overtrained) → forgetting, its floor over the sweep, and
the compute multiplier (the share of its own pretraining that the adapted model is still worth on English).

Target: Spanish (data.target = corpus "spanish"), as in the paper's capacity experiment (en/es).

  small (2 CPU cores; a 46k-parameter GPT-2, 2 × 32, vocabulary 512, pretrained to 20 and 500 TPP = 0.9M and
         23M English tokens (0.08 and 2.0 epochs); 20 × N = 0.9M Spanish tokens per adaptation; 3 seeds):
    python -m cpt_jax.study --config configs/study_forgetting.py --workdir runs/study_forgetting
    python tools/report.py runs/study_forgetting
  full (GPU/TPU: a 20M GPT-2 pretrained to 20 and 2,000 TPP, 20 × N adaptation tokens per cell):
    python -m cpt_jax.study --config configs/study_forgetting.py:full --workdir gs://…/study_forgetting
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study_common as common  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config(scale: str = "small"):
  s, a = common.new_study(scale, "corpus", "spanish")
  if scale == "small":
    s.ptpp = [20, 500]  # low vs high tokens per parameter, 25× apart (the paper: 20 vs 17,000)
    a.train.atpp, a.train.total_tokens = 20, 0
    s.replay_tokens = 400_000  # ≥ the 25 % of 0.9M tokens each self-replay cell reads: no sample is reused
    ratio = 0.25
  else:
    # a small model pretrained long, as in the paper's capacity slices (6M–46M models, 10–10,000 TPP)
    s.sizes = [(scale, {"model.num_layers": 6, "model.d_model": 384, "model.num_heads": 6})]
    s.ptpp = [20, 2000]
    a.train.atpp, a.train.total_tokens = 20, 0
    s.replay_tokens = 150_000_000
    ratio = 0.25
  s.adapt = a
  s.axes = [("method", [
      ("none", {}),
      ("real_ntp", common.replay(ratio, "real", "ntp", 1.0, "regularizer")),
      ("real_kl", common.replay(ratio, "real", "kl", 1.0, "regularizer")),
      ("self_ntp", common.replay(ratio, "self", "ntp", 1.0, "regularizer")),
      ("self_kl_l0.3", common.replay(ratio, "self", "kl", 0.3, "regularizer")),
      ("self_kl_l1", common.replay(ratio, "self", "kl", 1.0, "regularizer")),
      ("self_kl_l3", common.replay(ratio, "self", "kl", 3.0, "regularizer")),
      ("self_kl_l10", common.replay(ratio, "self", "kl", 10.0, "regularizer")),
  ])]
  s.report = "forgetting"
  s.claims = {
      "nearly_eliminates": 0.25,  # "nearly eliminates forgetting": ≤ 25 % of no-replay forgetting
      "same_as_real": 0.25,  # self ≈ real: |self − real| ≤ 25 % of no-replay forgetting
  }
  return s
