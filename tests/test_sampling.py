import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cpt_jax import model as model_lib, sampling
from cpt_jax.data.tokenizer import BOS, EOS


@pytest.fixture(scope="module")
def tiny():
  cfg = model_lib.ModelConfig(vocab_size=64, max_len=80, num_layers=2, d_model=32, num_heads=4)
  graphdef, state = nnx.split(model_lib.GPT(cfg, nnx.Rngs(0)))
  params = jax.tree.map(lambda x: x * 4, nnx.to_pure_dict(state))  # sharper distributions: a real test
  return cfg, graphdef, params


@pytest.mark.parametrize("length", [20, 70])  # 70: three cache phases (32, 64, 70 slots)
def test_kv_cache_sampler_equals_full_recomputation(tiny, length):
  cfg, graphdef, params = tiny
  key = jax.random.key(3)
  cached = sampling.make_sampler(graphdef, cfg, batch=4, length=length)(params, key)
  recomputed = sampling.make_recompute_sampler(graphdef, cfg, batch=4, length=length)(params, key)
  assert cached.shape == (4, length + 1) and np.all(np.asarray(cached)[:, 0] == BOS)
  np.testing.assert_array_equal(cached, recomputed)
  other = sampling.make_sampler(graphdef, cfg, batch=4, length=length)(params, jax.random.key(4))
  assert not np.array_equal(cached, other)  # the key matters
  assert len(np.unique(np.asarray(cached)[:, 1:])) > 5  # temperature 1: diverse tokens


def test_greedy_decoder_matches_unbatched_argmax(tiny):
  cfg, graphdef, params = tiny

  class Tok:  # ids as text, so the test needs no tokenizer model
    bos_id, eos_id, pad_id = BOS, 3, 0

    def encode(self, text):
      return [int(t) for t in text.split()]

    def decode(self, ids):
      return " ".join(str(i) for i in ids)

  prompts = ["5 6 7", "9 10 11 12 13 14 15", "20"]
  got = sampling.GreedyDecoder(graphdef, cfg, params, Tok(), batch_size=4, max_new_tokens=4)(prompts)
  forward = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))
  for prompt, answer in zip(prompts, got):
    seq = [BOS] + Tok().encode(prompt)
    want = []
    for _ in range(4):  # plain greedy by full forward passes, one prompt at a time (right-padded: causal)
      padded = jnp.array([seq + [0] * (cfg.max_len - len(seq))])
      nxt = int(jnp.argmax(forward(params, padded)[0, len(seq) - 1]))
      if nxt == EOS:
        break
      want.append(nxt)
      seq.append(nxt)
    assert answer == " ".join(map(str, want))


def test_row_groups_decode_the_rows_one_call_decodes(tiny):
  """On a CPU the sampler decodes its rows in concurrent groups; row r draws with fold_in(key, r) wherever it
  is decoded, so the grouping changes no token."""
  cfg, graphdef, params = tiny
  key = jax.random.key(7)
  whole = sampling.make_sampler(graphdef, cfg, batch=8, length=24, row_groups=1)(params, key)
  grouped = sampling.make_sampler(graphdef, cfg, batch=8, length=24, row_groups=4)(params, key)
  assert len({tuple(r) for r in np.asarray(whole).tolist()}) == 8
  np.testing.assert_array_equal(grouped, whole)
  logits_BxV = 3 * jax.random.normal(jax.random.key(1), (8, 50))
  drawn = sampling._pick(logits_BxV, key, 1.0)
  np.testing.assert_array_equal(sampling._pick(logits_BxV[5:], key, 1.0, first_row=5), drawn[5:])
  assert not np.array_equal(sampling._pick(logits_BxV[5:], key, 1.0), drawn[5:])  # the row index matters
  with pytest.raises(ValueError, match="row_groups=3 must be ≥ 1 and divide the batch of 8 rows"):
    sampling.make_sampler(graphdef, cfg, batch=8, length=24, row_groups=3)


def test_cpu_row_groups_one_per_core_of_at_least_eight_rows(monkeypatch):
  monkeypatch.setattr(sampling.os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
  assert [sampling.cpu_row_groups(None, b) for b in (4, 12, 24, 64, 256)] == [1, 1, 3, 4, 4]

  class TwoDevices:
    size = 2

  assert sampling.cpu_row_groups(TwoDevices(), 64) == 1
