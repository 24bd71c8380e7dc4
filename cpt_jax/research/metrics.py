"""Prediction metrics for scaling-law forecasts (pred and obs are losses, > 0).

  huber_log          mean_i H_δ(log pred_i − log obs_i),  H_δ(u) = u²/2 if |u| ≤ δ else δ(|u| − δ/2)
  mae_rel            mean_i |pred_i − obs_i| / obs_i                     (a fraction, not %)
  calibration_slope  OLS slope b of log obs = a + b·log pred            (1 is ideal; < 1: over-dispersed)
  rmse               sqrt(mean_i (pred_i − obs_i)²)                      (loss units)
  mape               100·mean_i |pred_i − obs_i| / obs_i                (%)
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("huber_log", "mae_rel", "calibration_slope", "rmse", "mape")


def huber(u, delta: float):
  a = np.abs(u)
  return np.where(a <= delta, 0.5 * u * u, delta * (a - 0.5 * delta))


def huber_log(pred, obs, delta: float = 1e-3) -> float:
  return float(np.mean(huber(np.log(pred) - np.log(obs), delta)))


def mae_rel(pred, obs) -> float:
  return float(np.mean(np.abs(np.asarray(pred) - obs) / obs))


def calibration_slope(pred, obs) -> float:
  """Slope of the OLS fit of observed log loss on predicted log loss; nan if predictions are constant."""
  x, y = np.log(pred), np.log(obs)
  x = x - x.mean()
  sxx = float(np.dot(x, x))
  return float(np.dot(x, y - y.mean()) / sxx) if sxx > 0 else float("nan")


def rmse(pred, obs) -> float:
  return float(np.sqrt(np.mean((np.asarray(pred) - obs) ** 2)))


def mape(pred, obs) -> float:
  return 100.0 * mae_rel(pred, obs)


def all_metrics(pred, obs, delta: float = 1e-3) -> dict[str, float]:
  pred, obs = np.asarray(pred, np.float64), np.asarray(obs, np.float64)
  return {"huber_log": huber_log(pred, obs, delta), "mae_rel": mae_rel(pred, obs),
          "calibration_slope": calibration_slope(pred, obs), "rmse": rmse(pred, obs), "mape": mape(pred, obs)}
