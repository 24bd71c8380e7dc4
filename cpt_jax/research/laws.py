"""Adaptation scaling-law forms: small named objects with parameter bounds and a vectorised predict.

Inputs (`Inputs`), one value per run:
  N  model parameters, in billions (params / 1e9)
  P  PTPP of the base checkpoint (pre-training tokens / params)
  D  adaptation tokens, replay included, in billions (adapt_tokens / 1e9)
  s  share of the adaptation mix that is the *modelled* domain's own data

Convention (the D-CPT one, Que et al. 2024): a form always describes the loss of one domain and `s` is
that domain's share of the mix, so the same form and fitter serve both losses:
  target loss  s = 1 − r  (r = replay ratio; target tokens are s·D = (1−r)·D)
  base loss    s = r      (replay tokens are r·D; r = 0 means no base data, hence most forgetting)
`D` stays the whole adaptation budget; the D-CPT data term B·s^η/D^β reads in domain tokens as
B·s^(η+β)/(s·D)^β, so η absorbs the difference and its sign is left free.

The D-CPT law is the paper's PTPP-agnostic baseline. Every other form here is **our own**
PTPP-aware reconstruction (the paper's Form 1/2/3 equations are not public to us); `gated_floor`
is only *our* reading of the paper's "gated+floor" description.

Adding a form is a decorated function of (p, X) whose docstring is its formula:

  @register("my_form", E=(0.05, 20), A=(1e-6, 1e6), alpha=(0.01, 2))
  def _my_form(p, X):
    "L = E + A/N^α"
    return p.E + p.A / X.N ** p.alpha

`p.<name>` arrays have shape (K, 1) (K parameter vectors) and X's arrays shape (n,), so a form
evaluates K parameter vectors on n runs at once; bounds whose ratio is ≥ 100 (both > 0) are
searched on a log scale.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Callable, Mapping

import numpy as np

N_UNIT = 1e9  # N and D are measured in billions (of parameters, of tokens)
D_UNIT = 1e9
P_REF = 100.0  # PTPP at which the PTPP-modulated terms equal their plain D-CPT values
FLOOR_SHARPNESS = 50.0  # 1/nats: the smooth max reaches the larger input within ~0.02 nats


@dataclasses.dataclass(frozen=True)
class Inputs:
  N: np.ndarray
  P: np.ndarray
  D: np.ndarray
  s: np.ndarray

  def __len__(self) -> int:
    return len(self.N)

  # logs, cached: exp(a·ln x) is much faster than x**a, and the fitter calls forms thousands of times
  @functools.cached_property
  def lnN(self) -> np.ndarray:
    return np.log(self.N)

  @functools.cached_property
  def lnD(self) -> np.ndarray:
    return np.log(self.D)

  @functools.cached_property
  def lnP(self) -> np.ndarray:
    return np.log(self.P)

  @functools.cached_property
  def lns(self) -> np.ndarray:
    with np.errstate(divide="ignore"):
      return np.log(self.s)

  def take(self, idx) -> "Inputs":
    return Inputs(*(np.asarray(a)[idx] for a in (self.N, self.P, self.D, self.s)))

  @classmethod
  def make(cls, params, ptpp, adapt_tokens, replay_ratio, target: str = "target_loss") -> "Inputs":
    """From raw units (parameters, PTPP, tokens, replay ratio) for the loss named by `target`; scalars and
    arrays broadcast together and flatten to one run per element."""
    b = [np.ravel(v) for v in np.broadcast_arrays(
        *(np.asarray(v, np.float64) for v in (params, ptpp, adapt_tokens, replay_ratio)))]
    return cls(b[0] / N_UNIT, b[1], b[2] / D_UNIT, domain_share(b[3], target))

  @classmethod
  def from_table(cls, table: Mapping[str, np.ndarray], target: str = "target_loss") -> "Inputs":
    """From a results table (columns params, ptpp, adapt_tokens or atpp, replay_ratio)."""
    tokens = table["adapt_tokens"] if "adapt_tokens" in table else np.asarray(table["atpp"]) * table["params"]
    return cls.make(table["params"], table["ptpp"], tokens, table["replay_ratio"], target)


def domain_share(replay_ratio, target: str) -> np.ndarray:
  """The modelled domain's share of the adaptation mix: 1 − r for the target loss, r for the base loss."""
  r = np.asarray(replay_ratio, np.float64)
  if target == "target_loss":
    return 1.0 - r
  if target == "base_loss":
    return r
  raise ValueError(f"target must be 'target_loss' or 'base_loss', got {target!r}")


@dataclasses.dataclass(frozen=True)
class Form:
  """A law: `fn(p, X)` gives the loss; `bounds[name] = (lo, hi)` for each parameter, in order."""
  name: str
  bounds: dict[str, tuple[float, float]]
  fn: Callable
  formula: str

  @property
  def param_names(self) -> tuple[str, ...]:
    return tuple(self.bounds)

  def is_log(self, name: str) -> bool:
    lo, hi = self.bounds[name]
    return lo > 0 and hi / lo >= 100

  def as_array(self, params) -> np.ndarray:
    """A dict (names → values) or an array (…, n_params) as a float array (…, n_params)."""
    if isinstance(params, Mapping):
      return np.array([params[k] for k in self.param_names], np.float64)
    return np.asarray(params, np.float64)

  def as_dict(self, theta) -> dict[str, float]:
    return {k: float(v) for k, v in zip(self.param_names, np.asarray(theta))}

  def predict(self, params, X: Inputs) -> np.ndarray:
    """Loss for each run: (n,) for one parameter vector, (K, n) for K of them."""
    theta = self.as_array(params)
    batched = theta.ndim == 2
    theta2 = np.atleast_2d(theta)
    p = types.SimpleNamespace(**{k: theta2[:, i:i + 1] for i, k in enumerate(self.param_names)})
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
      out = np.broadcast_to(self.fn(p, X), (theta2.shape[0], len(X)))
    return out if batched else out[0]


FORMS: dict[str, Form] = {}


def register(name: str, **bounds: tuple[float, float]):
  """Decorator: add `fn(p, X) -> loss` to FORMS under `name`; its docstring is the formula."""
  def deco(fn):
    FORMS[name] = Form(name, dict(bounds), fn, (fn.__doc__ or "").strip())
    return FORMS[name]
  return deco


def softplus(x):
  return np.logaddexp(0.0, x)


def sigmoid(x):
  return 0.5 * (1.0 + np.tanh(0.5 * x))


def smooth_max(a, b, k: float = FLOOR_SHARPNESS):
  """max(a, b) smoothed by softplus over ~1/k."""
  return b + softplus(k * (a - b)) / k


# Shared parameter boxes: amplitude, exponent, the D-CPT nine.
_AMP = (1e-6, 1e6)
_EXP = (0.01, 2.0)
DCPT_BOUNDS = dict(E=(0.05, 20.0), A=_AMP, alpha=_EXP, B=_AMP, beta=_EXP, eta=(-2.0, 2.0), C=_AMP,
                   gamma=_EXP, eps=(1e-4, 1.0))


def model_term(p, X):
  """A/N^α."""
  return p.A * np.exp(-p.alpha * X.lnN)


def data_term(p, X, beta=None):
  """B·s^η/D^β (0 at s = 0 when η > 0, as s^η is)."""
  return p.B * np.exp(p.eta * X.lns - (p.beta if beta is None else beta) * X.lnD)


def mix_term(p, X):
  """C/(s+ε)^γ."""
  return p.C * np.exp(-p.gamma * np.log(X.s + p.eps))


@register("dcpt", **DCPT_BOUNDS)
def _dcpt(p, X):
  """L = E + A/N^α + B·s^η/D^β + C/(s+ε)^γ   (D-CPT law, Que et al. 2024; no PTPP: the baseline)"""
  return p.E + model_term(p, X) + data_term(p, X) + mix_term(p, X)


@register("ptpp_additive", **DCPT_BOUNDS, G=_AMP, kappa=(-2.0, 2.0))
def _ptpp_additive(p, X):
  """L = E + A/N^α + B·s^η/D^β + C/(s+ε)^γ + G/P^κ   (ours: an additive pre-training term; κ may be < 0)"""
  return p.E + model_term(p, X) + data_term(p, X) + mix_term(p, X) + p.G * np.exp(-p.kappa * X.lnP)


@register("ptpp_modulated", **DCPT_BOUNDS, kappa=(-2.0, 2.0))
def _ptpp_modulated(p, X):
  """L = E + A/N^α + (P/P_ref)^κ·[B·s^η/D^β + C/(s+ε)^γ],  P_ref = 100   (ours: PTPP scales adaptation)"""
  return p.E + model_term(p, X) + np.exp(p.kappa * (X.lnP - np.log(P_REF))) * (data_term(p, X) + mix_term(p, X))


@register("ptpp_exponent", **DCPT_BOUNDS, beta1=(-1.0, 1.0))
def _ptpp_exponent(p, X):
  """L = E + A/N^α + B·s^η/D^β(P) + C/(s+ε)^γ,  β(P) = max(β + β1·ln(P/P_ref), 0.001)   (ours)"""
  beta_p = np.maximum(p.beta + p.beta1 * (X.lnP - np.log(P_REF)), 1e-3)
  return p.E + model_term(p, X) + data_term(p, X, beta=beta_p) + mix_term(p, X)


@register("gated_floor", **DCPT_BOUNDS, g_min=(0.0, 1.0), k_gate=(-8.0, 8.0), P0=(1.0, 1e4), F=(0.01, 20.0))
def _gated_floor(p, X):
  """L = smax(F, E + A/N^α + g(P)·[B·s^η/D^β + C/(s+ε)^γ]),
  g(P) = g_min + (1 − g_min)·σ(k_gate·ln(P/P0)),  smax(a, b) = b + softplus(50·(a − b))/50   (ours)"""
  gate = p.g_min + (1.0 - p.g_min) * sigmoid(p.k_gate * (X.lnP - np.log(p.P0)))
  return smooth_max(p.F, p.E + model_term(p, X) + gate * (data_term(p, X) + mix_term(p, X)))


@register("pretrain", E=(0.05, 20.0), A=_AMP, alpha=_EXP, G=_AMP, kappa=_EXP)
def _pretrain(p, X):
  """L0 = E + A/N^α + G/P^κ   (base loss *before* adaptation; not an adaptation law, not in ADAPTATION_FORMS)"""
  return p.E + model_term(p, X) + p.G * np.exp(-p.kappa * X.lnP)


ADAPTATION_FORMS = ("dcpt", "ptpp_additive", "ptpp_modulated", "ptpp_exponent", "gated_floor")
