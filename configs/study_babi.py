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
  full (GPU/TPU: 111M GPT-2 (12 × 768, vocab 32k) pretrained to 20 TPP on FineWeb-Edu, budgets 10^7 … 10^9 tokens,
        replay (FineWeb-Edu) 0/5/10/25/50/80 %, 2 × 5 × 6 cells × 3 seeds; `--status` prints the cost):
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
  else:  # a 111M GPT-2 pretrained to 20 TPP on FineWeb-Edu (study_common), the paper's grid, 3 seeds
    s.ptpp = [20]
    # synthetic: fresh stories (~0.65G tokens, read ≤ 1.6 times at 10^9); original: a fixed pool of ~7.4k questions
    # per task (the release's en-10k has 10k), read for many epochs by design
    stories = {"synthetic": 100_000, "original": 2_000}
    budgets = [10**7, 10**7.5, 10**8, 10**8.5, 10**9]  # the paper's plateau is near 10^8.5
    ratios = [0, 0.05, 0.1, 0.25, 0.5, 0.8]  # the paper's 5-10 % (general knowledge) and 80 % (GSM8K)
    a.data.batch_size = 320  # those ratios in whole rows, divisible by 16 data shards: 16, 32, 80, 160, 256
    a.opt.warmup_tokens = 2_000_000  # the 10^7 budget is 31 steps: warm up in 6, then decay
    a.train.babi_eval_examples = 2_000
  # crossed scoring: every run answers both variants' held-out test stories (generated apart, the same in every
  # run, none in either variant's training pool), so synthetic and original are compared on the same questions
  a.train.babi_eval_modes = "synthetic,original"
  a.train.babi_eval_stories = 20 if scale == "small" else 200
  a.train.babi_eval_exclude_stories = max(stories.values())
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
