"""Hugging Face GPT-2 interop against a committed fixture (tools/make_hf_fixture.py): a tiny random GPT-2 with
its tokenizer.json, and transformers' logits and loss on fixed tokens. No transformers or torch needed."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flax import nnx

from cpt_jax import build, hf, loop, metrics, sampling
from cpt_jax.config import source_config
from cpt_jax.data import records, sources
from cpt_jax.data.records import DataError
from cpt_jax.data.tokenizer import HFTokenizer
from tests.conftest import synthetic_document

FIXTURE = Path(__file__).parent / "fixtures" / "hf_gpt2_tiny"
REFERENCE = json.loads((FIXTURE / "reference.json").read_text())


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("hf") / "gpt2_tiny"
  hf.import_model(str(FIXTURE), str(workdir))
  return workdir, build.load_run(str(workdir))


def _logits(bundle, params, ids):
  model = nnx.merge(bundle.graphdef, params)
  h, _ = model.hidden(jnp.asarray([ids]))
  return np.asarray(model.logits(h)[0])


def test_imported_model_reproduces_the_reference_logits(imported):
  _, (cfg, bundle, params, tokenizer, _) = imported
  ids = REFERENCE["ids"]
  logits = _logits(bundle, params, ids[:-1])
  np.testing.assert_allclose(logits, np.asarray(REFERENCE["logits"]), atol=1e-4)
  logp = jax.nn.log_softmax(logits, -1)
  loss = -float(np.mean(np.asarray(logp)[np.arange(len(ids) - 1), ids[1:]]))
  assert loss == pytest.approx(REFERENCE["loss"], abs=1e-4)
  assert (cfg.model.num_layers, cfg.model.d_model, cfg.model.max_len) == (2, 64, 64)
  assert isinstance(tokenizer, HFTokenizer) and tokenizer.bos_id == tokenizer.eos_id == ids[0]
  assert tokenizer.encode(REFERENCE["text"])[:10] == ids[1:11]


def test_export_then_import_is_bit_identical(imported, tmp_path):
  workdir, (_, bundle, params, _, _) = imported
  out = hf.export_model(str(workdir), str(tmp_path / "export"))
  for name in (hf.HF_CONFIG, hf.HF_WEIGHTS, hf.HF_TOKENIZER):
    assert (Path(out) / name).is_file()
  again = tmp_path / "again"
  hf.import_model(out, str(again))
  _, _, params2, _, _ = build.load_run(str(again))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  exported = json.loads((Path(out) / hf.HF_CONFIG).read_text())
  fixture = json.loads((FIXTURE / hf.HF_CONFIG).read_text())
  for k in ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size", "bos_token_id", "eos_token_id"):
    assert exported[k] == fixture[k], k


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
                    reason="transformers/torch not installed (tools/check_hf_export.py runs this check by hand)")
def test_transformers_loads_the_export(imported, tmp_path):
  import torch  # noqa: PLC0415  # optional dependency, only where installed
  import transformers  # noqa: PLC0415
  workdir, _ = imported
  out = hf.export_model(str(workdir), str(tmp_path / "export"))
  model = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
  with torch.no_grad():
    logits = model(torch.tensor([REFERENCE["ids"][:-1]])).logits[0].numpy()
  np.testing.assert_allclose(logits, np.asarray(REFERENCE["logits"]), atol=1e-4)


@pytest.mark.parametrize("field,value,words", [
    ("activation_function", "relu", ["activation_function", "tanh GELU"]),
    ("layer_norm_epsilon", 1e-6, ["layer_norm_epsilon", "1e-5"]),
    ("model_type", "llama", ["model_type", "GPT-2"]),
    ("n_inner", 100, ["n_inner", "multiple"]),
])
def test_unrepresentable_config_names_the_field(field, value, words):
  cfg = json.loads((FIXTURE / hf.HF_CONFIG).read_text())
  cfg[field] = value
  with pytest.raises(hf.HFError) as e:
    hf.model_fields(cfg)
  assert all(w in str(e.value) for w in words), str(e.value)


def test_import_cli_errors_are_one_line(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    hf.main(["import", "--model", str(tmp_path / "nothing"), "--workdir", str(tmp_path / "w")])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error:") and "nothing" in err[0]


def _write_parquet(path: Path, docs: list[str]) -> None:
  pq.write_table(pa.table({"content": docs, "id": list(range(len(docs)))}), str(path), row_group_size=16)


def _docs(n: int, seed: int) -> list[str]:
  rng = random.Random(seed)
  return [synthetic_document(rng, 30) for _ in range(n)]


def test_hf_source_prepares_parquet_jsonl_and_arrow_and_resumes_exactly(tiny_config_factory, tmp_path):
  """A local Parquet dataset (named train/validation files), a JSON Lines file and a save_to_disk-style Arrow
  directory become datasets whose texts are the documents, in order; training on one resumes bit-exactly."""
  pq_dir = tmp_path / "pq"
  pq_dir.mkdir()
  train_docs, val_docs = _docs(120, 0), _docs(12, 1)
  _write_parquet(pq_dir / "train-00000-of-00001.parquet", train_docs)
  _write_parquet(pq_dir / "validation-00000-of-00001.parquet", val_docs)
  src = source_config("hf")
  src.path, src.text_field = str(pq_dir), "content"
  data_dir = tmp_path / "data"
  train = sources.open_source(src, "train", data_dir)
  assert [train[i]["text"] for i in range(len(train))] == train_docs
  assert len(sources.open_source(src, "validation", data_dir)) == len(val_docs)
  # one unnamed JSON Lines file: documents 0, k, 2k, … held out for validation, disjoint from train
  (tmp_path / "all.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in train_docs))
  js = source_config("hf")
  js.path = str(tmp_path / "all.jsonl")
  jtrain, jval = (sources.open_source(js, s, data_dir) for s in ("train", "validation"))
  assert len(jtrain) + len(jval) == len(train_docs) and len(jval) < len(jtrain)
  # save_to_disk layout: Arrow stream files
  arrow_dir = tmp_path / "saved" / "train"
  arrow_dir.mkdir(parents=True)
  table = pa.table({"text": train_docs[:20]})
  with pa.ipc.new_stream(str(arrow_dir / "data-00000-of-00001.arrow"), table.schema) as w:
    w.write_table(table)
  (arrow_dir / "state.json").write_text("{}")
  ar = source_config("hf")
  ar.path = str(tmp_path / "saved")
  assert sources.open_source(ar, "train", tmp_path / "data2")[0]["text"] == train_docs[1]  # doc 0 held out
  assert sources.open_source(ar, "validation", tmp_path / "data2")[0]["text"] == train_docs[0]

  overrides = {"data.base.kind": "hf", "data.base.path": str(pq_dir), "data.base.text_field": "content",
               "data.data_dir": str(data_dir), "train.total_tokens": 8 * 32 * 10, "train.checkpoint_every_tokens":
               8 * 32 * 4}
  full = tmp_path / "full"
  loop.run(tiny_config_factory(**overrides), str(full))
  part = tmp_path / "part"
  with pytest.raises(loop.Preempted):
    loop.run(tiny_config_factory(**overrides, **{"train.stop_at_step": 6}), str(part))
  loop.run(tiny_config_factory(**overrides), str(part))
  losses = lambda w: {r["step"]: r["train/loss"] for r in metrics.read_metrics(str(w)) if "train/loss" in r}
  assert losses(part) == losses(full) and len(losses(full)) == 10


def test_hf_source_errors_name_the_field(tmp_path):
  _write_parquet(tmp_path / "x.parquet", ["a b c"])
  src = source_config("hf")
  src.path = str(tmp_path / "x.parquet")
  with pytest.raises(DataError, match="no 'text'.*text_field"):
    sources.open_source(src, "train", tmp_path / "data")
  src.path = str(tmp_path / "missing")
  with pytest.raises(DataError, match="no Parquet"):
    sources.open_source(src, "train", tmp_path / "data")


def test_hf_hub_source_without_validation_split_holds_out_and_caps(tmp_path, monkeypatch):
  """A hub dataset with only a train split (FineWeb-Edu's layout), read through a stand-in for the `datasets`
  library: validation is documents 0, k, 2k, … of train, and max_documents caps what is read and written."""
  docs = _docs(50, 0)
  streamed = []

  def load_dataset(path, config, split, streaming):
    assert (path, config, streaming) == ("org/corpus", "sample", True)
    if split != "train":
      raise ValueError(f"Bad split: {split}")
    for d in docs:
      streamed.append(d)
      yield {"text": d}

  fake = type(sys)("datasets")
  fake.load_dataset, fake.get_dataset_split_names = load_dataset, lambda path, config: ["train"]
  monkeypatch.setitem(sys.modules, "datasets", fake)
  src = source_config("hf", "org/corpus:sample")
  src.max_documents = 12
  train, val = (sources.open_source(src, s, tmp_path / "data") for s in ("train", "validation"))
  assert [train[i]["text"] for i in range(len(train))] == docs[1:12]  # the first 12 documents, less the held out
  assert [val[i]["text"] for i in range(len(val))] == [docs[0]]
  assert len(streamed) == 2 * 12  # each split stops reading the stream at the cap
  src.train_split = "training"
  with pytest.raises(DataError, match=r"no split 'training' \(it has \['train'\]\).*train_split"):
    sources.open_source(src, "train", tmp_path / "data")


def test_evaluate_cli_prints_the_reference_loss_of_the_imported_model(imported, tmp_path):
  """`python -m cpt_jax.evaluate` on the imported fixture, evaluated on the reference tokens as one row."""
  workdir, _ = imported
  data = records.write_dataset(tmp_path, "reference_row", {s: [{"tokens": np.asarray(REFERENCE["ids"], np.int32)}]
                                                             for s in ("train", "validation")}, {"tokens": "tokens"})
  out = tmp_path / "eval.json"
  proc = subprocess.run(
      [sys.executable, "-m", "cpt_jax.evaluate", f"--workdir={workdir}",
       f"--config=configs/from_json.py:{workdir}/config.json", "--config.data.base.kind=records",
       f"--config.data.base.path={data}", "--config.train.eval_rows=1", f"--out={out}"],
      capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(out.read_text())
  assert result["eval/base/loss"] == pytest.approx(REFERENCE["loss"], abs=1e-4)
  assert f"{REFERENCE['loss']:.4f}" in proc.stdout


def test_adapt_from_the_imported_model_with_self_replay_and_kl(imported, tiny_config_factory, tmp_path, monkeypatch):
  """An adapt run from the imported fixture, self-generated replay + KL, end to end: its step-0 base loss is the
  reference loss on the same tokens, and replay rows start with the tokenizer's own BOS (<|endoftext|>)."""
  workdir, (_, _, _, tokenizer, _) = imported
  data = records.write_dataset(tmp_path, "reference_row", {s: [{"tokens": np.asarray(REFERENCE["ids"], np.int32)}]
                                                             for s in ("train", "validation")}, {"tokens": "tokens"})
  (tmp_path / "target").mkdir()
  for split in ("train", "validation"):
    (tmp_path / "target" / f"{split}.txt").write_text(" ".join(_docs(20, 3 if split == "train" else 4)))
  cfg = tiny_config_factory(**{
      "stage": "adapt", "init_from": str(workdir), "data.base.kind": "records", "data.base.path": str(data),
      "data.target.kind": "files", "data.target.path": str(tmp_path / "target" / "{split}.txt"),
      "data.batch_size": 4, "train.eval_rows": 1, "train.total_tokens": 4 * 64 * 3, "opt.warmup_tokens": 0,
      "replay.ratio": 0.25, "replay.kind": "self", "replay.loss": "kl", "replay.semantics": "regularizer",
      "replay.chunk_sequences": 4})
  seen_bos, make_sampler = [], sampling.make_sampler

  def recording_sampler(*args, **kwargs):  # the run's own sampler: which BOS does it start rows with?
    seen_bos.append(kwargs.get("bos_id"))
    return make_sampler(*args, **kwargs)

  monkeypatch.setattr(sampling, "make_sampler", recording_sampler)
  summary = loop.run(cfg, str(tmp_path / "adapt"))
  assert summary["steps"] == 3 and summary["replay_kind"] == "self"
  assert summary["before"]["eval/base/loss"] == pytest.approx(REFERENCE["loss"], abs=1e-4)
  train = [r for r in metrics.read_metrics(str(tmp_path / "adapt")) if "train/kl" in r]
  assert len(train) == 3 and train[0]["train/kl"] < 1e-5  # the student starts as the teacher
  assert seen_bos == [tokenizer.bos_id] and tokenizer.bos_id == REFERENCE["ids"][0]
