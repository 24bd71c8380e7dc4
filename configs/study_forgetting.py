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
  full (GPU/TPU: the paper's 6 × 384 GPT-2 (12.3M parameters, vocabulary 4096, context 256) pretrained to 20 and
        17,000 TPP on FineWeb-Edu, adapted on 20 × N tokens of Spanish Wikipedia per cell; 3 seeds; `--status`
        prints the cost):
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
    # the paper's capacity models: 6 layers × 384 (head dim 64), context 256, vocabulary 4096, 256 × 256 tokens
    # per step (12.3M parameters), pretrained to 20 TPP (Chinchilla) and 17,000 TPP (Figure 1's overtrained
    # model: 209B tokens, 2.1 epochs of FineWeb-Edu sample-100BT; the paper: 10 epochs of C4-en), then adapted
    # to Spanish (Wikipedia: the local corpus is far too small for 20 × N tokens)
    s.sizes = [(scale, {"model.num_layers": 6, "model.d_model": 384, "model.num_heads": 6, "model.max_len": 256,
                        "data.vocab_size": 4096})]
    s.ptpp = [20, 17_000]
    for c in (s.pretrain, a):  # AdamW β2 = 0.999 at 65,536 tokens per step (a 45.4M-token half-life), wd 0.02
      c.opt.b2_halflife_tokens, c.opt.weight_decay, c.opt.min_lr_ratio = 45_400_000, 0.02, 0.0  # cosine to 0
    s.pretrain.opt.warmup_tokens = 10_000_000
    s.pretrain.train.eval_every_tokens = 10_000_000  # a dense validation curve: the compute multiplier reads it
    a.opt.lr = 1e-4  # the paper's capacity finetune (cosine)
    common.full_source(a.data.target, "wikipedia-es")
    a.train.atpp, a.train.total_tokens = 20, 0
    s.replay_tokens = 64_000_000  # ≥ the 25 % of 20 × 12.3M tokens each self-replay cell reads: none reused
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
