"""configs/gpt2.py: the published GPT-2 sizes, counted on abstract shapes (nothing is allocated)."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from cpt_jax import build, config as config_lib, model as model_lib, sharding

ROOT = Path(__file__).resolve().parents[1]
GPT2 = runpy.run_path(str(ROOT / "configs" / "gpt2.py"))["get_config"]
# Parameters of the released checkpoints (Hugging Face gpt2, gpt2-medium, gpt2-large, gpt2-xl; tied head).
PUBLISHED = {"124m": 124_439_808, "355m": 354_823_168, "774m": 774_030_080, "1.5b": 1_557_611_200}


@pytest.mark.parametrize("size", sorted(PUBLISHED))
def test_parameter_counts_match_the_published_sizes(size):
  cfg = GPT2(size)
  config_lib.validate(cfg, 1)
  model_cfg = model_lib.ModelConfig.from_config(cfg.model, cfg.data.vocab_size)
  assert model_cfg.vocab_size == 50257 and model_cfg.padded_vocab == 50304 and model_cfg.max_len == 1024
  bundle = build.model_bundle(model_cfg, sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}))
  assert bundle.num_params == model_lib.total_params(model_cfg) == PUBLISHED[size]
  padding = (50304 - 50257) * model_cfg.d_model
  assert model_lib.count_params(bundle.abstract_params) == PUBLISHED[size] + padding


def test_sizes_are_selected_on_the_command_line():
  assert GPT2("1.5b,adapt").stage == "adapt" and GPT2("124m").stage == "pretrain"
  with pytest.raises(ValueError, match="one of"):
    GPT2("2b")
  out = subprocess.run([sys.executable, "-m", "cpt_jax.train", "--config", "configs/gpt2.py:355m", "--workdir",
                        "runs/never_written", "--dry_run"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "24-layer d=1024" in out.stdout and "× 1024 tokens" in out.stdout, out.stdout
