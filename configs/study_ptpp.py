"""Study 3 (seed 002, Goffinet, Bergsma et al. 2025): PTPP-aware adaptation scaling laws, English → Spanish.

Three model sizes, each pretrained to PTPP 15, 31 and 279 (separate runs, as the paper's ratios); at each, an
adaptation grid ATPP × replay ratio (real English replay, next-token loss, mixture). The report fits the
laws (cpt_jax/research/fit.py: D-CPT and the PTPP-aware forms) on PTPP 15 and 31, forecasts PTPP 279's
target (Spanish) and base (English) losses with and without anchors (a few measured PTPP-279 cells), scores
them on the other PTPP-279 cells (3 seeds each), and plans the cheapest (ATPP, replay) meeting a target-loss
and a forgetting threshold (cpt_jax/research/plan.py), checked on a held-out cell.

  small (2 CPU cores; 2-layer GPT-2s of width 32, 48, 64 (46k, 86k, 139k parameters), vocabulary 512;
         PTPP 279 = 12.8M-38.8M English tokens (1.1-3.5 epochs); ATPP 5, 10, 20 of Spanish):
    python -m cpt_jax.study --config configs/study_ptpp.py --workdir runs/study_ptpp
    python tools/report.py runs/study_ptpp
  full (GPU/TPU: GPT-2s of 36M, 61M and 111M parameters (6 × 512, 8 × 640, 12 × 768; vocab 32k) pretrained on
        FineWeb-Edu to PTPP 15, 31, 279 as in the paper; 4 ATPP × 5 replay ratios of Spanish Wikipedia per stage;
        `--status` prints the cost):
    python -m cpt_jax.study --config configs/study_ptpp.py:full --workdir gs://…/study_ptpp --jobs 4
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study_common as common  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config(scale: str = "small"):
  s, a = common.new_study(scale, "corpus", "spanish")
  a.train.total_tokens = 0
  if scale == "small":
    s.sizes = list(common.SMALL_SIZES.items())
    s.ptpp = [15, 31, 279]  # fit on 15 and 31, forecast 279, as the paper
    atpps = [5, 10, 20]
    ratios = [0, 0.25, 0.5]
    anchors = 3
    # the fit stages once (seed 0); the held-out stage, where the forecasts are scored, with 3 seeds
    s.exclude = [{"ptpp": f"{p:g}", "seed": f"s{x}"} for p in s.ptpp[:2] for x in s.seeds[1:]]
  else:
    # a GPT-2 family up to the 111M class (12 × 768), context 1024, vocabulary 32k, head dim 64, pretrained on
    # FineWeb-Edu (PTPP 279 of 111M = 31B tokens, 0.31 epochs of sample-100BT), adapted to Spanish Wikipedia
    s.sizes = [(f"{label}", {"model.num_layers": layers, "model.d_model": d, "model.num_heads": d // 64})
               for label, layers, d in (("36m", 6, 512), ("61m", 8, 640), ("111m", 12, 768))]
    s.ptpp = [15, 31, 279]  # fit on 15 and 31, forecast 279, as the paper
    atpps = [0.5, 1, 2, 4]
    ratios = [0, 0.0625, 0.125, 0.25, 0.5]
    anchors = 5
    common.full_source(a.data.target, "wikipedia-es")
    # the fit stages once (seed 0); the held-out stage, where the forecasts are scored, with 3 seeds
    s.exclude = [{"ptpp": f"{p:g}", "seed": f"s{x}"} for p in s.ptpp[:2] for x in s.seeds[1:]]
  a.train.atpp = atpps[0]  # each cell sets its own
  s.adapt = a
  s.replay_tokens = 0
  s.axes = [
      ("atpp", [(f"a{x:g}", {"train.atpp": x}) for x in atpps]),
      ("replay", common.replay_axis(ratios)),
  ]
  s.report = "ptpp"
  s.claims = {
      "anchors": anchors,  # measured points of the held-out stage used to recalibrate
      # planning thresholds, relative to the held-out stage's measured grid: target loss ≤ its median,
      # forgetting ≤ half the mean no-replay forgetting
      "plan_target_quantile": 0.5,
      "plan_forgetting_share": 0.5,
  }
  return s
