"""The quickstart report: forgetting vs target loss and bAbI accuracy of its three methods."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cpt_jax.research.report.common import PAPERS, _plt, accuracy_baselines, markdown_table, read_results


def quickstart(root: str | Path) -> str:
  """Forgetting vs target loss and bAbI accuracy of the three quickstart methods; writes .md and .png."""
  plt = _plt()
  root = Path(root)
  rows = sorted(read_results(root / "results.csv"), key=lambda r: str(r["axis_method"]))
  base = accuracy_baselines(rows)
  columns = [("method", "axis_method", "s"), ("semantics", "replay_semantics", "s"),
             ("replay rows", "replay_ratio", ".2f"), ("replay tokens", "replay_token_share", ".2f"),
             ("target loss before", "target_loss_before", ".3f"),
             ("target loss after", "target_loss", ".3f"), ("base loss before", "base_loss_before", ".3f"),
             ("base loss after", "base_loss", ".3f"), ("forgetting", "forgetting", "+.4f"),
             ("bAbI accuracy", "babi_accuracy", ".3f"), ("bAbI 95 % interval", "babi_interval", "s"),
             ("minutes", "wall_seconds", ".1f")]
  for r in rows:
    r["wall_seconds"] = r["wall_seconds"] / 60 if r.get("wall_seconds") else None
    r["replay_semantics"] = r.get("replay_semantics") or "none"
    lo_hi = base.interval(r)
    r["babi_interval"] = f"{lo_hi[0]:.3f}–{lo_hi[1]:.3f}" if lo_hi else None
  table = markdown_table(rows, columns)
  by = {r["axis_method"]: r for r in rows}
  lines = [f"- bAbI: {base.sentence()}"]
  if "no_replay" in by:
    nr = by["no_replay"]
    for name, what in (("real_ntp", "Real replay, next-token loss, mixed into the batch"),
                       ("self_kl", "Self-generated replay with KL(teacher‖student) as a regularizer")):
      if name not in by:
        continue
      r = by[name]
      ratio = r["forgetting"] / nr["forgetting"] if nr["forgetting"] else float("nan")
      gap = r["target_loss"] / nr["target_loss"] - 1
      lines.append(f"- {what}: forgetting {ratio:.2f}× that of no replay, target loss {gap:+.1%} vs no replay.")
    if "self_kl" in by:
      kl = by["self_kl"]
      ratio = kl["forgetting"] / nr["forgetting"] if nr["forgetting"] else float("nan")
      ok = ratio <= 0.5 and abs(kl["target_loss"] / nr["target_loss"] - 1) <= 0.05
      lines.append(f"- Compared with {PAPERS['forgetting']}, who find that self-generated replay with KL nearly "
                   f"removes forgetting at little cost to the new task (here: ≤ 0.5× forgetting, target loss within "
                   f"5 %): {'reproduced' if ok else 'NOT reproduced'} in this run.")
  verdict = "\n" + "\n".join(lines) + "\n"

  fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
  for r in rows:
    axes[0].scatter(r["forgetting"], r["target_loss"], s=60)
    axes[0].annotate(r["axis_method"], (r["forgetting"], r["target_loss"]), textcoords="offset points", xytext=(5, 5))
  axes[0].set_xlabel("forgetting (base loss after − before, nats)")
  axes[0].set_ylabel("target (bAbI) loss after")
  axes[0].axvline(0, color="gray", lw=0.5)
  base.bars(axes[1], [str(r["axis_method"]) for r in rows], rows)
  axes[1].set_ylabel("bAbI exact-match accuracy (mean over tasks)")
  fig.suptitle("cpt_jax quickstart: adaptation to bAbI, with and without replay")
  fig.tight_layout()
  fig.savefig(root / "quickstart.png", dpi=120)
  plt.close(fig)
  text = f"# Quickstart results\n\n{table}\n{verdict}"
  (root / "quickstart.md").write_text(text)
  return text


REPORTS: dict[str, Callable[[str | Path], str]] = {"quickstart": quickstart}
