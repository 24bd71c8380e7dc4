"""Study 1 (seed 000, Spiegelhalter et al. 2025): adapting to bAbI with replay under token budgets.

bAbI-Synthetic (diverse vocabulary, many fresh stories) vs bAbI-Original (the release's vocabulary, its 1k
regime repeated over epochs) as the target, both scored on the same held-out test stories of both variants;
token budgets × replay ratios (mixture: a ratio is a share of the rows; one token-mean over the batch, so where
only the answers are scored, replay's share of the scored tokens is far larger: results.csv replay_token_share)
of real base-corpus replay (DCLM-Edu in the paper, our English corpus here); 3 seeds per cell. Report:
per-task accuracy with intervals against each task's majority answer, learning curves over the budget,
forgetting, the budget where accuracy plateaus, and a guideline (smallest replay ratio keeping forgetting under
a threshold, per budget).

  small (2 CPU cores: a 1.1M-parameter GPT-2 pretrained to 10 TPP, then taught to copy from its context, tasks 1,
         12, 20 trained on the answers, budgets 300k-15M tokens, replay 0/5/10/25/50/80 %; `--status` prints each
         cell's tokens and CPU-hours; two cells at a time train 1.20× the tokens/s of one on 2 cores, 8,467 vs
         7,068, since this model's small matmuls use the second core poorly):
    python -m cpt_jax.study --config configs/study_babi.py --workdir runs/study_babi --jobs 2
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
  if scale == "small":
    # A 1.1M-parameter GPT-2 (4 × 128, context 256, vocabulary 2048) pretrained to 10 TPP (10.9M English tokens,
    # 1.6 epochs), then 1,500 steps (6.1M tokens) in which half of every batch is copy rows: English spans from
    # unrelated places shown twice, scored on the repeats as a mean of their own (data.copy_share). A small model
    # does not learn to look tokens up in its context from a few TPP of text, and bAbI's "where is X?" questions
    # need exactly that: from the text-only base, task 1 stays at the last-place heuristic at any budget tried,
    # from a base taught to copy it reaches 0.89 at 4M tokens (docs/results/README.md, "Recipes tried"). The phase
    # runs at a constant rate without clipping: with a cosine and clipping at 1 it learns a quarter of the copying.
    s.sizes = [("d128", {"model.num_layers": 4, "model.d_model": 128, "model.num_heads": 4, "model.max_len": 256,
                         "data.vocab_size": 2048})]
    s.pretrain.data.batch_size = 16
    s.ptpp = [10]
    s.midtrain = ("copy", {"data.copy_share": 0.5, "opt.lr": 1e-3, "opt.decay_embeddings": True,
                           "opt.schedule": "constant", "opt.clip_norm": 0.0,
                           "train.total_tokens": 1_500 * 16 * 256})
    # Three tasks the copying base can learn: 1 (where is X: the last move of the person asked about), 12 (the same
    # when people move in pairs, "X and Y went to Z") and 20 (motivations: why / where a hungry or tired person
    # goes). Tasks 1 and 12 teach one lookup together. Pilots from this base, 3M tokens, seed 0, synthetic test:
    # with 12: qa1 0.76, qa12 0.67, qa20 0.89; with 4 (two-argument relations): 0.82 / 0.31 / 0.96; with 13
    # (coreference through "they"): 0.65 / 0.55 / 0.89, and qa13 reached only 0.61 at 9M (3 seeds), its "they"
    # unresolved on synthetic stories. A task's accuracy grows with its own share of the budget (task 1 alone: 0.85
    # at 3M tokens, run L2), so 15M tokens give each of three tasks ~5M. Stories of ≤ 14 statements: every example
    # of these tasks fits the 256-token context whole in both variants.
    a.data.target.babi_tasks = "1,12,20"
    a.data.target.babi_max_statements = 14
    # synthetic: 5,000 stories per task; original: the release's 1k regime, repeated over epochs by design
    stories = {"synthetic": 5_000, "original": 1_000}
    # 15M: at 9M tokens (3 seeds) qa12 stood at 0.78 [0.77, 0.79], still rising (0.67 at 3M, seed 0), qa1 0.90,
    # qa20 0.99; the budget axis has to reach the plateau of the slowest task. 300k (bAbI-Synthetic without replay
    # only) starts the learning curve near the majority answer: 1M is already at 0.53
    budgets = [300_000, 1_000_000, 3_000_000, 9_000_000, 15_000_000]
    ratios = [0, 0.05, 0.1, 0.25, 0.5, 0.8]
    a.data.batch_size = 20  # every ratio in whole rows: 1, 2, 5, 10, 16
    # the loss on the answers at a low rate: a rate of 2e-3 erases the copying the base was taught, and a loss on
    # every story token leaves the lookup unlearned (runs L1, L5)
    a.opt.lr, a.opt.warmup_tokens = 2e-4, 50_000
    a.data.answer_only = True
    a.train.babi_eval_examples = 300  # 100 questions per task and test set
  else:  # a 111M GPT-2 pretrained to 20 TPP on FineWeb-Edu (study_common), the paper's grid, 3 seeds
    a.data.target.babi_tasks = "all"
    s.ptpp = [20]
    # synthetic: fresh stories (~0.65G tokens, read ≤ 1.6 times at 10^9); original: a fixed pool of ~7.4k questions
    # per task (the release's en-10k has 10k), read for many epochs by design
    stories = {"synthetic": 100_000, "original": 2_000}
    budgets = [10**7, 10**7.5, 10**8, 10**8.5, 10**9]  # the paper's plateau is near 10^8.5
    ratios = [0, 0.05, 0.1, 0.25, 0.5, 0.8]  # the paper's 5-10 % (general knowledge) and 80 % (GSM8K)
    a.data.batch_size = 320  # those ratios in whole rows, divisible by 16 data shards: 16, 32, 80, 160, 256
    a.opt.warmup_tokens = 2_000_000  # the 10^7 budget is 31 steps: warm up in 6, then decay
    a.train.babi_eval_examples = 2_000
    # stories trained as text, question and answer included, as in continued pretraining (a replay ratio is then
    # a share of the scored tokens too)
    a.data.answer_only = False
  # crossed scoring: every run answers both variants' held-out test stories (generated apart, the same in every
  # run, none in either variant's training pool), so synthetic and original are compared on the same questions
  a.train.babi_eval_modes = "synthetic,original"
  a.train.babi_eval_stories = 100 if scale == "small" else 200
  a.train.babi_eval_exclude_stories = max(stories.values())
  s.adapt = a
  s.replay_tokens = 0
  s.axes = [  # replay before budget: the runner starts with the no-replay learning curve
      ("data", [(mode, {"data.target.babi_mode": mode, "data.target.babi_stories": n,
                        "data.target.name": f"babi_{mode}"}) for mode, n in stories.items()]),
      ("replay", common.replay_axis(ratios)),
      ("budget", [(common.tokens_label(b), {"train.total_tokens": int(b)}) for b in budgets]),
  ]
  if scale == "small":  # CPU time: bAbI-Original without replay only (the variants compared at 0 %), at 300k
    # and 9M only for bAbI-Synthetic (the variants are crossed at the largest budget); the replay ratios at 1M and
    # 3M (where the guideline's question is open), the smallest budget and the two largest without replay (the
    # learning curves' start, and their end, where mastery is judged)
    s.exclude = [{"data": "original", "replay": label} for label, _ in s.axes[1][1] if label != "r0"]
    s.exclude += [{"data": "original", "budget": common.tokens_label(b)} for b in (budgets[0], budgets[-2])]
    s.exclude += [{"budget": common.tokens_label(b), "replay": label}
                  for b in (budgets[0], *budgets[-2:]) for label, _ in s.axes[1][1] if label != "r0"]
  # run order: bAbI-Synthetic at the largest budget without replay (mastery is judged there), bAbI-Original there
  # (the crossed comparison), the no-replay learning curves of both variants, then the replay ratios budget by
  # budget, smallest first (the guideline's rows), then the rest
  s.first = ([{"data": "synthetic", "replay": "r0", "budget": common.tokens_label(budgets[-1])},
              {"replay": "r0", "budget": common.tokens_label(budgets[-1])}, {"replay": "r0"}]
             + [{"budget": common.tokens_label(b)} for b in budgets[:-1]])
  s.report = "babi"
  # claim checks (cpt_jax/research/report/babi.py): thresholds fixed before the runs
  s.claims = {
      "forgetting_threshold_rel": 0.01,  # "retained": base loss rises by ≤ 1 % of its value before adapting
      "plateau_tolerance": 0.02,  # accuracy within 2 points of the best budget's = plateaued
      "mastery_accuracy": 0.8,  # a task counts as learned at this accuracy (the design aims at ≥ 3 tasks)
  }
  return s
