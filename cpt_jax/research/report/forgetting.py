"""Study 2 (seed 001): forgetting by replay kind and loss (none, real NTP, self NTP, self KL)."""

from __future__ import annotations


import numpy as np

from cpt_jax.research.report.common import Claim, Study, _plt, _spearman, markdown_table


def _method(r) -> tuple[str, str, float]:
  return (r["replay_kind"], r["replay_loss"], r["replay_coeff"])


def forgetting_report(st: Study):
  plt = _plt()
  cc = st.claims_cfg
  near, same = cc.get("nearly_eliminates", 0.25), cc.get("same_as_real", 0.25)
  stages = sorted({r["ptpp"] for r in st.rows})
  methods = list(dict.fromkeys(r["axis_method"] for r in st.rows))
  by = {(r["ptpp"], r["axis_method"]): r for r in st.rows}
  body, claims = [], []
  for p in stages:
    rows = [by[(p, m)] for m in methods if (p, m) in by]
    none = by.get((p, "none"))
    for r in rows:
      r["forgetting_share"] = r["forgetting"] / none["forgetting"] if none and none["forgetting"] else None
      r["method"] = r["axis_method"]
      replayed = r["replay_kind"] != "none"
      r["replay"] = f"{r['replay_kind']}" + (f" {r['replay_loss']} λ={r['replay_coeff']:g}" if replayed else "")
    body += [f"### PTPP {p:g} (base loss before adapting {rows[0]['base_loss_before']:.3f}, Spanish loss before "
             f"{rows[0]['target_loss_before']:.3f})", "",
             markdown_table(rows, [("method", "method", "s"), ("replay", "replay", "s"),
                                   ("Spanish loss after", "target_loss", ".3f"),
                                   ("English loss after", "base_loss", ".3f"),
                                   ("forgetting (nats)", "forgetting", "+.4f"),
                                   ("÷ no-replay", "forgetting_share", ".2f")]),
             ""]
  # figures: forgetting per method and stage; trade-off
  fig, ax = plt.subplots(figsize=(9, 3.8))
  w = 0.8 / len(stages)
  for k, p in enumerate(stages):
    ax.bar(np.arange(len(methods)) + k * w, [by[(p, m)]["forgetting"] if (p, m) in by else np.nan for m in methods],
           w, label=f"PTPP {p:g}")
  ax.set_xticks(np.arange(len(methods)) + w * (len(stages) - 1) / 2, methods, rotation=20, fontsize=8)
  ax.axhline(0, color="gray", lw=0.5)
  ax.set_ylabel("forgetting (English loss rise, nats)")
  ax.legend(fontsize=8)
  body.append(st.figure(fig, "forgetting_by_method.png", "Forgetting of each method, from a low- and a high-PTPP "
                        "checkpoint of the same pretraining run"))
  fig, ax = plt.subplots(figsize=(6, 4.2))
  for k, p in enumerate(stages):
    pts = [by[(p, m)] for m in methods if (p, m) in by]
    ax.scatter([r["forgetting"] for r in pts], [r["target_loss"] for r in pts], color=f"C{k}", label=f"PTPP {p:g}")
    for r in pts:
      ax.annotate(r["axis_method"], (r["forgetting"], r["target_loss"]), fontsize=6, xytext=(3, 3),
                  textcoords="offset points")
    sweep = sorted((r for r in pts if r["replay_kind"] == "self" and r["replay_loss"] == "kl"),
                   key=lambda r: r["replay_coeff"])
    ax.plot([r["forgetting"] for r in sweep], [r["target_loss"] for r in sweep], "--", color=f"C{k}", lw=0.8)
  ax.set_xlabel("forgetting (nats)")
  ax.set_ylabel("Spanish loss after adapting")
  ax.legend(fontsize=8)
  body.append(st.figure(fig, "tradeoff.png", "Target loss against forgetting; dashed: the λ sweep of "
                        "self-generated KL replay"))

  low, high = stages[0], stages[-1]
  g = lambda p, m: by[(p, m)]["forgetting"] if (p, m) in by else float("nan")
  for p in stages:
    n0 = g(p, "none")
    s_best = min(g(p, "self_ntp"), g(p, "self_kl_l1"))
    claims.append(Claim(
        f"Self-generated replay nearly eliminates forgetting (PTPP {p:g})",
        f"no replay {n0:+.4f} nats; self-generated NTP {g(p, 'self_ntp'):+.4f}, KL λ=1 {g(p, 'self_kl_l1'):+.4f} "
        f"(best = {s_best / n0:.2f} × no replay; 'nearly eliminates' = ≤ {near:.2f} ×)",
        bool(s_best <= near * n0) if n0 > 0 else None))
  p = low
  n0 = g(p, "none")
  d_ntp, d_kl = g(p, "self_ntp") - g(p, "real_ntp"), g(p, "self_kl_l1") - g(p, "real_kl")
  claims.append(Claim(
      f"Self-generated replay works about as well as real data (PTPP {p:g})",
      f"self − real forgetting: NTP {d_ntp:+.4f}, KL {d_kl:+.4f} nats (no replay {n0:+.4f}; 'about as well' = "
      f"|difference| ≤ {same:.2f} × no replay)",
      bool(max(abs(d_ntp), abs(d_kl)) <= same * n0) if n0 > 0 else None))
  kl_real, ntp_real, kl_self, ntp_self = g(p, "real_kl"), g(p, "real_ntp"), g(p, "self_kl_l1"), g(p, "self_ntp")
  claims.append(Claim(
      f"KL beats NTP: slightly on self-generated data, much on off-policy (real) data (PTPP {p:g}, λ=1)",
      f"real: KL {kl_real:+.4f} vs NTP {ntp_real:+.4f}; self-generated: KL {kl_self:+.4f} vs NTP {ntp_self:+.4f} nats",
      bool(kl_real < ntp_real and kl_self <= ntp_self + 0.1 * abs(n0) and (ntp_real - kl_real) > (ntp_self - kl_self))))
  rhos = []
  for p in stages:
    sweep = sorted((by[(p, m)] for m in methods if (p, m) in by and by[(p, m)]["replay_kind"] == "self"
                    and by[(p, m)]["replay_loss"] == "kl"), key=lambda r: r["replay_coeff"])
    if len(sweep) >= 3:
      lam = [r["replay_coeff"] for r in sweep]
      rhos.append((p, _spearman(lam, [r["forgetting"] for r in sweep]),
                   _spearman(lam, [r["target_loss"] for r in sweep]), sweep))
  if rhos:
    seq = lambda sw, key, fmt: ", ".join(format(r[key], fmt) for r in sw)
    txt = "; ".join(f"PTPP {p:g}: λ {seq(sw, 'replay_coeff', 'g')} → forgetting {seq(sw, 'forgetting', '+.3f')}, "
                    f"Spanish loss {seq(sw, 'target_loss', '.3f')} (Spearman with λ: {rf:+.2f}, {rt:+.2f})"
                    for p, rf, rt, sw in rhos)
    claims.append(Claim("Larger λ trades less forgetting for a higher target loss", txt,
                        all(rf < 0 and rt > 0 for _, rf, rt, _ in rhos)))
  # capacity: forgetting floor
  floors = {}
  for p in stages:
    reps = [by[(p, m)] for m in methods if (p, m) in by and by[(p, m)]["replay_kind"] != "none"]
    n = by[(p, "none")]
    reached = [r for r in reps if r["target_loss"] <= n["target_loss"] * 1.05]
    pool = reached or reps
    best = min(pool, key=lambda r: r["forgetting"])
    floors[p] = (best, bool(reached), n)
  fl, fh = floors[low][0]["forgetting"], floors[high][0]["forgetting"]
  rl = fl / floors[low][0]["base_loss_before"]
  rh = fh / floors[high][0]["base_loss_before"]
  claims.append(Claim(
      "Forgetting persists without spare capacity: the forgetting floor is higher after longer pretraining",
      f"floor (least forgetting over the replay methods and λ sweep, among runs within 5 % of the no-replay "
      f"Spanish loss): PTPP {low:g}: {fl:+.4f} nats ({floors[low][0]['axis_method']}, {rl:+.2%} of the base loss), "
      f"PTPP {high:g}: {fh:+.4f} nats ({floors[high][0]['axis_method']}, {rh:+.2%}); no-replay forgetting "
      f"{floors[low][2]['forgetting']:+.4f} → {floors[high][2]['forgetting']:+.4f}",
      bool(fh > fl)))
  title = "Study 2 (seed 001): forgetting — replay source, loss, λ, and capacity (English → Spanish)"
  body.insert(0, "Forgetting = English (base) validation loss after adapting − before. Target = Spanish "
              "validation loss. All replay methods use 25 % of every batch.\n")
  return title, "## Results\n\n" + "\n".join(body), claims
