"""tools/bench.py --quick: every figure of docs/performance.md is present and sane (no timing thresholds here)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("train_tokens_per_sec", "mfu", "flops_per_token", "kl_cost_ratio", "sampler_vs_train", "sampler_vs_recompute",
        "data_vs_step", "data_wait_fraction", "checkpoint_overhead", "compile_seconds", "device", "goals", "passed")


def _positive(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_bench_prints_every_figure(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--reps", "2"], env=env,
                        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  r = json.loads(proc.stdout)
  missing = [k for k in KEYS if k not in r]
  assert not missing, missing
  for k in ("train_tokens_per_sec", "sampler_vs_train", "sampler_vs_recompute", "data_vs_step", "compile_seconds"):
    assert _positive(r[k]), (k, r[k])
  assert 0.0 <= r["data_wait_fraction"] < 1.0, r["data_wait_fraction"]
  assert 0 < r["mfu"] < 5  # vs a measured matmul peak: noisy, but never negative or absurd
  assert set(r["kl_cost_ratio"]) == {"0.25", "0.5"} and all(_positive(v) for v in r["kl_cost_ratio"].values())
  assert r["checkpoint_overhead"] >= 0 and math.isfinite(r["checkpoint_overhead"])
  f = r["flops_per_token"]
  assert f["value"] == 6 * (f["non_embedding_params"] + f["V*D"]) + 12 * f["L"] * f["T"] * f["D"]
  assert "6*(non-embedding params + V*D) + 12*L*T*D" == f["accounting"]
  assert r["device"].startswith("cpu")
  assert set(r["passed"]) == set(r["goals"]) and all(isinstance(v, bool) for v in r["passed"].values())
  # each KL row of the table says whether its own ratio meets its goal (1.137 at r = 0.25, 1.225 at r = 0.5)
  bench = _tool_module()
  r["kl_cost_ratio"] = {"0.25": 1.10, "0.5": 1.30}
  r["passed"] = bench.goals_passed(r)
  assert not r["passed"]["kl_cost_ratio"]
  kl_rows = [line for line in bench.to_markdown(r).splitlines() if line.startswith("| KL step")]
  assert [row.rstrip(" |").rsplit("| ", 1)[-1] for row in kl_rows] == ["yes", "no"], kl_rows


def _tool_module(name: str = "bench"):
  if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))  # bench_compile imports bench from beside it
  spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  return bench


def test_gpt2_runs_as_plumbing_on_a_cpu_and_compile_seconds_are_measured():
  """`--config configs/gpt2.py:124m` on a CPU: a reduced batch, flagged; tools/bench_compile.py's measurement runs."""
  bench = _tool_module()
  gpt2 = bench.load_config(str(ROOT / "configs" / "gpt2.py") + ":124m", {})
  assert gpt2.model.num_layers == 12 and gpt2.model.scan_layers and bench.plumbing_only(gpt2)
  assert not bench.plumbing_only(bench.load_config(str(ROOT / "configs" / "pretrain_tiny.py"), bench.REFERENCE))
  tiny = {"model.num_layers": 2, "model.d_model": 32, "model.num_heads": 2, "model.max_len": 16,
          "data.batch_size": 4, "data.vocab_size": 256, "model.scan_layers": True}
  compile_seconds = _tool_module("bench_compile").compile_seconds
  assert _positive(compile_seconds(bench.load_config(str(ROOT / "configs" / "pretrain_tiny.py"), tiny)))
