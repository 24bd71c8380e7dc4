"""The same train steps on 1 device and on 8 fake CPU devices under several meshes give the same losses; the
sampler and the greedy decoder give the same tokens, each device decoding only its rows."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from cpt_jax import evaluation, sharding

MESHES = ["1,1,1", "8,1,1", "2,4,1", "2,2,2", "1,1,8"]
KL_MESHES = ["1,1,1", "8,1,1", "2,2,2"]  # replay rows + teacher forward + KL, 8 of 16 rows
SAMPLE_MESHES = ["1,1,1", "2,4,1", "2,2,2"]


def _run():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  script = Path(__file__).with_name("sharding_check.py")
  args = [f"0:{m}" for m in MESHES] + [f"8:{m}" for m in KL_MESHES] + [f"sample:{m}" for m in SAMPLE_MESHES]
  out = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True,
                       text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  line = [s for s in out.stdout.splitlines() if s.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def result():
  return _run()


def test_meshes_give_same_losses(result):
  for replay, meshes in (("0", MESHES), ("8", KL_MESHES)):
    base = result[f"{replay}:1,1,1"][0]
    assert len(base) == 4 and base[0] != base[-1]
    for mesh in meshes[1:]:
      np.testing.assert_allclose(result[f"{replay}:{mesh}"][0], base, atol=1e-5, rtol=0,
                                 err_msg=f"mesh {mesh}, {replay} replay rows")
  assert result["8:1,1,1"][0][0] != result["0:1,1,1"][0][0]  # the KL term is really there
  # parameters are really sharded as the rules say, not silently replicated
  specs_222 = result["0:2,2,2"][1]
  assert any("'fsdp'" in s and "'tensor'" in s for s in specs_222.values()), specs_222
  assert "'tensor'" in result["0:1,1,8"][1]["['blocks'][0]['mlp']['w_in']"]


def test_each_device_computes_only_its_rows(result):
  """FSDP splits the batch too: left to propagation, the activations followed the D-sharded weights and every
  device ran the model on every row. With replay, the teacher runs on each device's replay rows."""
  for key, shards in (("0:8,1,1", 8), ("0:2,4,1", 8), ("0:2,2,2", 4), ("8:2,2,2", 4)):
    replay_rows = int(key.split(":")[0])
    assert sorted(result[key][2]) == ["eval", "train"], key
    for step, rows in result[key][2].items():
      want = sorted({16 // shards} | ({replay_rows // shards} if replay_rows and step == "train" else set()))
      assert rows == want, f"mesh {key}: the {step} step's attention runs on {rows} rows per device, not {want}"


def test_sampling_splits_rows_over_the_batch_axes(result):
  tokens, answers, rows_per_device, _ = result["sample:1,1,1"]
  assert rows_per_device == [8] and len({tuple(r) for r in tokens}) == 8  # 8 different samples
  assert len(set(answers)) > 1  # answers that depend on the prompt
  for mesh, rows in (("2,4,1", 1), ("2,2,2", 2)):  # 8 rows over data × fsdp shards: 8 or 4 of them
    got_tokens, got_answers, got_rows, loop_collectives = result[f"sample:{mesh}"]
    assert got_rows == [rows, 8], f"mesh {mesh}: a device decodes {got_rows} rows, not only its {rows}"
    assert got_tokens == tokens, f"mesh {mesh}: sampled tokens differ from one device's"
    assert got_answers == answers, f"mesh {mesh}: greedy answers differ from one device's"
  # FSDP: the weights are gathered once before decoding, not at every token (36 collectives in the loops before);
  # tensor parallelism does communicate at every token (so the count sees collectives where there are some)
  assert result["sample:2,4,1"][3] == 0 and result["sample:2,2,2"][3] > 0


def test_mesh_shape_errors_are_clear():
  assert sharding.resolve_mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == (4, 2, 1)
  with pytest.raises(sharding.MeshError, match="only one mesh axis may be -1"):
    sharding.resolve_mesh_shape({"data": -1, "fsdp": -1, "tensor": 1}, 8)
  with pytest.raises(sharding.MeshError, match="needs 6 devices but 8"):
    sharding.resolve_mesh_shape({"data": 3, "fsdp": 2, "tensor": 1}, 8)
  with pytest.raises(sharding.MeshError, match="do not divide the 8 devices"):
    sharding.resolve_mesh_shape({"data": -1, "fsdp": 3, "tensor": 1}, 8)


def test_eval_rows_are_those_of_the_batch_shards_a_process_holds(monkeypatch):
  rows = {"inputs": np.arange(6, dtype=np.int32)[:, None], "loss_mask": np.ones((6, 1), np.float32)}
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1})
  # the second of two processes sharing the one batch shard (e.g. mesh tensor=4 over 2 processes): all rows
  # (split by process index, it gave rows 3-5 of an array declared replicated)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert evaluation.pad_rows(rows, mesh)["inputs"][:, 0].tolist() == [0, 1, 2, 3, 4, 5]
  # four batch shards (6 rows padded to 8), this process holding shards 2 and 3
  monkeypatch.setattr(sharding, "batch_shards", lambda m: 4)
  monkeypatch.setattr(sharding, "local_batch_shards", lambda m: [2, 3])
  local = evaluation.pad_rows(rows, mesh)
  assert local["inputs"][:, 0].tolist() == [4, 5, 0, 0] and local["loss_mask"][:, 0].tolist() == [1, 1, 0, 0]
