"""Study 1 (seed 000, Spiegelhalter et al. 2025): adapting to bAbI with replay under token budgets.

bAbI-Synthetic (diverse vocabulary, many fresh stories) vs bAbI-Original (the release's vocabulary, a small
fixed pool repeated over epochs) as the target; token budgets × replay ratios of real base-corpus replay
(the paper's "replay", DCLM-Edu there, our English corpus here). Report: heatmaps of bAbI accuracy and of
base-domain forgetting, the budget where accuracy plateaus, and a guideline (smallest replay ratio keeping
forgetting under a threshold, per budget).

  small (2 CPU cores, ~22 min, 22 cells; reuses the shared pretraining run of configs/study_common.py):
    python -m cpt_jax.train --config configs/study_common.py --workdir runs/pretrain_small
    python -m cpt_jax.study --config configs/study_babi.py --workdir runs/study_babi
    python tools/report.py runs/study_babi
  full (GPU/TPU: 111M GPT-2 (12 × 768, vocab 32k) pretrained to 20 TPP, budgets 10^7 … 10^9 tokens, 2 × 5 × 6 cells):
    python -m cpt_jax.study --config configs/study_babi.py:full --workdir gs://…/study_babi --jobs 4
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study_common as common  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config(scale: str = "small"):
  s, a = common.new_study(scale, "babi", "babi")
  a.data.target.babi_tasks = "all"
  if scale == "small":
    s.ptpp = [4]
    stories = {"synthetic": 500, "original": 50}  # original: a small fixed pool, seen for epochs
    budgets = [20_000, 60_000, 180_000, 540_000]
    ratios = [0, 1 / 32, 1 / 8, 1 / 2]  # of a 32-row batch: 0, 1, 4, 16 rows
    a.train.babi_eval_examples = 200
  else:
    s.ptpp = [20]
    stories = {"synthetic": 50_000, "original": 2_000}
    budgets = [10**7, 10**7.5, 10**8, 10**8.5, 10**9]
    ratios = [0, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2]  # of a 256-row batch
    a.train.babi_eval_examples = 2_000
  s.adapt = a
  s.replay_tokens = 0
  s.axes = [
      ("data", [(mode, {"data.target.babi_mode": mode, "data.target.babi_stories": n,
                        "data.target.name": f"babi_{mode}"}) for mode, n in stories.items()]),
      ("budget", [(common.tokens_label(b), {"train.total_tokens": int(b)}) for b in budgets]),
      ("replay", common.replay_axis(ratios)),
  ]
  if scale == "small":  # CPU time: bAbI-Original and the largest budget only without and with 12.5 % replay
    s.exclude = [{ax: value, "replay": label} for ax, value in (("data", "original"), ("budget", "540k"))
                 for label, _ in s.axes[2][1] if label not in ("r0", "r12p5")]
  s.report = "babi"
  # claim checks (cpt_jax/research/report/babi.py): thresholds fixed before the runs
  s.claims = {
      "forgetting_threshold_rel": 0.01,  # "retained": base loss rises by ≤ 1 % of its value before adapting
      "plateau_tolerance": 0.02,  # accuracy within 2 points of the best budget's = plateaued
  }
  return s
