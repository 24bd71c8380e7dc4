"""Hugging Face GPT-2 checkpoints in and out: `python -m cpt_jax.hf import|export`.

    python -m cpt_jax.hf import --model DIR_OR_HUB_NAME --workdir W      # W is then a run to adapt from
    python -m cpt_jax.hf export --workdir W [--step S] --out DIR          # DIR loads as GPT2LMHeadModel

The Hugging Face layout (Conv1D weights stored [in, out], fused q/k/v columns, `transformer.h.{i}.…` names)
maps one to one onto this project's GPT-2 (`model.GPT`): same pre-LayerNorm blocks, ε = 1e-5, tanh-GELU,
learned positions, tied head. A config field the model cannot represent is refused, naming the field.
Parameters are placed on the mesh as each tensor is read (`safetensors` reads tensors one at a time), so a
large checkpoint is never held whole twice.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from cpt_jax import build, checkpoint as ckpt_lib, config as config_lib, console, model as model_lib
from cpt_jax import param_layout, paths, sharding
from cpt_jax.data.records import DataError
from cpt_jax.data.tokenizer import HFTokenizer, copy_tokenizer

HF_CONFIG, HF_WEIGHTS, HF_TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


class HFError(ValueError):
  """A Hugging Face checkpoint this project cannot represent or read; the message names the field or file."""


def model_fields(hf_cfg: dict[str, Any]) -> dict[str, Any]:
  """cpt_jax `model.*` fields of a GPT-2 config.json, or an HFError naming the first field that does not fit."""
  def need(field, ok, what):
    if not ok:
      raise HFError(f"config.json field {field}={hf_cfg.get(field)!r}: {what}")

  need("model_type", hf_cfg.get("model_type") == "gpt2", "only GPT-2 checkpoints (model_type gpt2) can be imported")
  d, heads = int(hf_cfg["n_embd"]), int(hf_cfg["n_head"])
  need("n_head", d % heads == 0, f"must divide n_embd={d}")
  inner = hf_cfg.get("n_inner") or 4 * d
  need("n_inner", inner % d == 0, f"must be a whole multiple of n_embd={d} (model.mlp_ratio)")
  need("activation_function", hf_cfg.get("activation_function", "gelu_new") in _GELU_TANH,
       f"this model's MLP uses the tanh GELU ({', '.join(_GELU_TANH)})")
  need("layer_norm_epsilon", abs(float(hf_cfg.get("layer_norm_epsilon", 1e-5)) - 1e-5) < 1e-12,
       "this model's LayerNorm uses ε = 1e-5")
  need("scale_attn_weights", hf_cfg.get("scale_attn_weights", True), "attention must be scaled by 1/√head_dim")
  need("scale_attn_by_inverse_layer_idx", not hf_cfg.get("scale_attn_by_inverse_layer_idx", False),
       "per-layer attention scaling is not supported")
  need("add_cross_attention", not hf_cfg.get("add_cross_attention", False), "cross-attention is not supported")
  return {"num_layers": int(hf_cfg["n_layer"]), "d_model": d, "num_heads": heads, "mlp_ratio": inner // d,
          "max_len": int(hf_cfg["n_positions"]), "tie_embeddings": bool(hf_cfg.get("tie_word_embeddings", True))}


def _hf_names(num_layers: int, tied: bool) -> dict[tuple, tuple[str, str]]:
  """cpt_jax parameter path → (Hugging Face tensor name, how to convert)."""
  names = {("wte",): ("transformer.wte.weight", "same"), ("wpe",): ("transformer.wpe.weight", "same"),
           ("ln_f", "scale"): ("transformer.ln_f.weight", "same"), ("ln_f", "bias"): ("transformer.ln_f.bias", "same")}
  for i in range(num_layers):
    h = f"transformer.h.{i}."
    names.update({
        ("blocks", i, "ln_attn", "scale"): (h + "ln_1.weight", "same"),
        ("blocks", i, "ln_attn", "bias"): (h + "ln_1.bias", "same"),
        ("blocks", i, "attn", "w_qkv"): (h + "attn.c_attn.weight", "qkv_weight"),
        ("blocks", i, "attn", "b_qkv"): (h + "attn.c_attn.bias", "qkv_bias"),
        ("blocks", i, "attn", "w_out"): (h + "attn.c_proj.weight", "out_weight"),
        ("blocks", i, "attn", "b_out"): (h + "attn.c_proj.bias", "same"),
        ("blocks", i, "ln_mlp", "scale"): (h + "ln_2.weight", "same"),
        ("blocks", i, "ln_mlp", "bias"): (h + "ln_2.bias", "same"),
        ("blocks", i, "mlp", "w_in"): (h + "mlp.c_fc.weight", "same"),
        ("blocks", i, "mlp", "b_in"): (h + "mlp.c_fc.bias", "same"),
        ("blocks", i, "mlp", "w_out"): (h + "mlp.c_proj.weight", "same"),
        ("blocks", i, "mlp", "b_out"): (h + "mlp.c_proj.bias", "same"),
    })
  if not tied:
    names[("w_head",)] = ("lm_head.weight", "transpose")  # HF: [V, D]; here [D, V]
  return names


def _to_cpt(x: np.ndarray, how: str, shape: tuple[int, ...]) -> np.ndarray:
  """A Hugging Face tensor in this model's layout (`shape` is the target's)."""
  if how == "qkv_weight":  # [D, 3·N·H] → [3, D, N, H]
    d = x.shape[0]
    return x.reshape(d, 3, shape[2], shape[3]).transpose(1, 0, 2, 3)
  if how == "qkv_bias":  # [3·N·H] → [3, N, H]
    return x.reshape(shape)
  if how == "out_weight":  # [N·H, D] → [N, H, D]
    return x.reshape(shape)
  if how == "transpose":
    return x.T
  return x


def _to_hf(x: np.ndarray, how: str) -> np.ndarray:
  if how == "qkv_weight":  # [3, D, N, H] → [D, 3·N·H]
    return x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)
  if how in ("qkv_bias", "out_weight"):
    return x.reshape((-1,) if how == "qkv_bias" else (x.shape[0] * x.shape[1], x.shape[2]))
  if how == "transpose":
    return x.T
  return x


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _set(tree, path, value):
  for k in path[:-1]:
    tree = tree[k]
  tree[path[-1]] = value


def load_params(weights_path: Path, model_cfg: model_lib.ModelConfig, bundle: build.ModelBundle) -> Any:
  """Parameters from a GPT-2 safetensors file, each placed on the mesh as soon as it is read."""
  names = _hf_names(model_cfg.num_layers, model_cfg.tie_embeddings)
  params = jax.tree.map(lambda x: None, bundle.abstract_params)
  with safe_open(str(weights_path), framework="numpy") as f:
    available = set(f.keys())
    prefix = "" if "transformer.wte.weight" in available else "transformer."  # GPT2Model saves without it
    for path, (name, how) in names.items():
      key = name if prefix == "" else name.removeprefix("transformer.")
      if key not in available:
        raise HFError(f"{weights_path} has no tensor {key!r}: not a GPT-2 checkpoint of this config.json")
      want = _get(bundle.abstract_params, path)
      x = _to_cpt(f.get_tensor(key).astype(np.float32), how, want.shape)
      if x.shape != want.shape:
        raise HFError(f"{weights_path}: tensor {key!r} has shape {x.shape} after conversion, the model needs "
                      f"{want.shape}; config.json does not describe these weights")
      _set(params, path, jax.device_put(x, _get(bundle.param_shardings, path)))
  return params


def export_params(params: Any, model_cfg: model_lib.ModelConfig) -> dict[str, np.ndarray]:
  """Hugging Face tensors of loop-layout, unpadded parameters (`export_model` converts a run's)."""
  names = _hf_names(model_cfg.num_layers, model_cfg.tie_embeddings)
  return {name: np.ascontiguousarray(_to_hf(np.asarray(jax.device_get(_get(params, path)), np.float32), how))
          for path, (name, how) in names.items()}


def hf_config(model_cfg: model_lib.ModelConfig, bos_id: int, eos_id: int) -> dict[str, Any]:
  return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": model_cfg.vocab_size,
          "n_positions": model_cfg.max_len, "n_embd": model_cfg.d_model, "n_layer": model_cfg.num_layers,
          "n_head": model_cfg.num_heads, "n_inner": model_cfg.mlp_dim, "activation_function": "gelu_new",
          "layer_norm_epsilon": 1e-5, "tie_word_embeddings": model_cfg.tie_embeddings, "bos_token_id": bos_id,
          "eos_token_id": eos_id, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
          "scale_attn_weights": True, "torch_dtype": "float32"}


def _resolve_source(model: str) -> Path:
  """A local directory, or a hub name downloaded with huggingface_hub where the machine has internet."""
  local = Path(model)
  if local.exists():
    if not local.is_dir():
      raise HFError(f"--model {model} is a file; give the directory that holds {HF_CONFIG} and {HF_WEIGHTS}")
    return local
  try:
    from huggingface_hub import snapshot_download  # pylint: disable=g-import-not-at-top  # optional: hub names only
  except ImportError:
    raise HFError(f"--model {model}: no such directory, and huggingface_hub is not installed to fetch it by name "
                  "(pip install huggingface_hub, or download the model and give its directory)") from None
  try:
    return Path(snapshot_download(model, allow_patterns=[HF_CONFIG, HF_WEIGHTS, HF_TOKENIZER]))
  except Exception as e:  # pylint: disable=broad-except  # offline, unknown name, no access: one message
    raise HFError(f"--model {model}: not a local directory, and fetching it from the hub failed "
                  f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None


def import_model(model: str, workdir: str) -> str:
  """Writes a cpt_jax run directory (Orbax checkpoint at step 0, config.json, tokenizer) from a GPT-2 checkpoint."""
  src = _resolve_source(model)
  for name in (HF_CONFIG, HF_WEIGHTS, HF_TOKENIZER):
    if not (src / name).is_file():
      raise HFError(f"{src} has no {name}; a GPT-2 checkpoint directory holds {HF_CONFIG}, {HF_WEIGHTS} and "
                    f"{HF_TOKENIZER}")
  try:
    hf_cfg = json.loads((src / HF_CONFIG).read_text())
  except (OSError, ValueError) as e:
    raise HFError(f"{src / HF_CONFIG} is not readable JSON ({e})") from None
  cfg = config_lib.default_config()
  cfg.model.update(model_fields(hf_cfg))
  cfg.data.vocab_size = int(hf_cfg["vocab_size"])
  cfg.data.tokenizer = str(Path(workdir) / HF_TOKENIZER)
  cfg.init_from = ""
  paths.path(workdir).mkdir(parents=True, exist_ok=True)
  if (paths.path(workdir) / "checkpoints").exists():
    raise HFError(f"--workdir {workdir} already holds checkpoints; import into a new directory")
  copy_tokenizer(HFTokenizer(src / HF_TOKENIZER), workdir)  # checks its BOS/EOS before anything is written
  model_cfg = model_lib.ModelConfig.from_config(cfg.model, cfg.data.vocab_size)
  mesh = sharding.make_mesh(cfg.mesh)
  bundle = build.model_bundle(model_cfg, mesh)
  params = load_params(src / HF_WEIGHTS, model_cfg, bundle)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=1)
  checkpointer.save(0, {"params": params, "step": np.zeros((), np.int32)}, {}, {"imported_from": str(model)},
                    force=True)
  checkpointer.close()
  build.save_run_config(cfg, workdir)
  return workdir


def export_model(workdir: str, out: str, step: int | None = None) -> str:
  """config.json, model.safetensors and the tokenizer of a run's checkpoint, in the Hugging Face GPT-2 format."""
  _, bundle, params, tokenizer, _ = build.load_run(workdir, step)
  params = model_lib.unpadded(param_layout.convert_layout(params, scan_layers=False), bundle.cfg)  # the HF layout
  out_dir = Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  save_file(export_params(params, bundle.cfg), str(out_dir / HF_WEIGHTS), metadata={"format": "pt"})
  (out_dir / HF_CONFIG).write_text(json.dumps(hf_config(bundle.cfg, tokenizer.bos_id, tokenizer.eos_id), indent=2))
  tokenizer.save_as(out_dir)
  return str(out_dir)


def main(argv=None) -> int:
  ap = console.ArgumentParser(prog="python -m cpt_jax.hf", description=__doc__.split("\n\n")[0])
  sub = ap.add_subparsers(dest="command", required=True)
  imp = sub.add_parser("import", help="GPT-2 checkpoint → cpt_jax run directory")
  imp.add_argument("--model", required=True, help="directory with config.json, model.safetensors, tokenizer.json "
                                                  "(or a hub name, with internet and huggingface_hub)")
  imp.add_argument("--workdir", required=True, help="new run directory; adapt from it with --config.init_from=W")
  exp = sub.add_parser("export", help="cpt_jax run → GPT-2 checkpoint directory (transformers' GPT2LMHeadModel)")
  exp.add_argument("--workdir", required=True)
  exp.add_argument("--step", type=int, default=-1, help="checkpoint step (-1: latest)")
  exp.add_argument("--out", required=True)
  args = ap.parse_args(argv)
  try:
    if args.command == "import":
      print(f"imported {args.model} into {os.path.abspath(import_model(args.model, args.workdir))}")
    else:
      out = export_model(args.workdir, args.out, None if args.step < 0 else args.step)
      print(f"exported {args.workdir} to {os.path.abspath(out)}")
  except (HFError, DataError, ckpt_lib.CheckpointError, config_lib.ConfigError) as e:
    console.fail(str(e))
  return 0


if __name__ == "__main__":
  console.setup_logging(None, "hf.log")
  sys.exit(main())
