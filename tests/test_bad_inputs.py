"""Bad input gets one clear error naming the field or file, a non-zero exit, and loses nothing already saved.

Most cases run in-process (config.validate / loop.run, asserting the exception and its key words); the CLI
cases check the exit code, exactly one `error:` line on stderr and no traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cpt_jax import checkpoint, config as config_lib, loop
from cpt_jax.data.records import DataError

sys.path.insert(0, str(Path(__file__).parent))
import cli_utils  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position

ConfigError = config_lib.ConfigError
ADAPT = {"stage": "adapt", "data.target.kind": "babi", "init_from": "/"}  # "/" exists: passes that check

VALIDATE_CASES = [  # (id, overrides, devices, key words of the message)
    ("zero_layers", {"model.num_layers": 0}, 1, ["model.num_layers", "> 0"]),
    ("negative_d_model", {"model.d_model": -64}, 1, ["model.d_model", "> 0"]),
    ("zero_max_len", {"model.max_len": 0}, 1, ["model.max_len", "> 0"]),
    ("heads_do_not_divide", {"model.num_heads": 3}, 1, ["model.num_heads", "divide"]),
    ("zero_batch", {"data.batch_size": 0}, 1, ["data.batch_size", "> 0"]),
    ("negative_lr", {"opt.lr": -1e-3}, 1, ["opt.lr", "> 0"]),
    ("zero_vocab", {"data.vocab_size": 0}, 1, ["data.vocab_size", "> 0"]),
    ("dropout_one", {"model.dropout": 1.0}, 1, ["model.dropout", "[0, 1)"]),
    ("dropout_negative", {"model.dropout": -0.1}, 1, ["model.dropout", "[0, 1)"]),
    ("min_lr_ratio_above_one", {"opt.min_lr_ratio": 1.5}, 1, ["opt.min_lr_ratio", "[0, 1]"]),
    ("b2_is_one", {"opt.b2": 1.0}, 1, ["opt.b2", "[0, 1)"]),
    ("replay_ratio_above_one", {**ADAPT, "replay.ratio": 1.5, "replay.kind": "real"}, 1, ["replay.ratio", "0.9"]),
    ("replay_ratio_negative", {**ADAPT, "replay.ratio": -0.25, "replay.kind": "real"}, 1, ["replay.ratio"]),
    ("replay_in_pretrain", {"replay.ratio": 0.25, "replay.kind": "real"}, 1, ["replay.ratio", "adapt"]),
    ("replay_kind_unknown", {**ADAPT, "replay.ratio": 0.25, "replay.kind": "imagined"}, 1, ["replay.kind"]),
    ("replay_rows_not_divisible", {**ADAPT, "replay.ratio": 0.25, "replay.kind": "real"}, 4,
     ["replay.ratio", "2 replay rows", "divisible", "4 data shards"]),
    ("mesh_does_not_divide_devices", {"mesh.data": 3}, 8, ["mesh", "3", "8"]),
    ("batch_not_divisible", {"data.batch_size": 6}, 4, ["data.batch_size", "divisible", "4"]),
    ("unknown_stage", {"stage": "finetune"}, 1, ["stage", "pretrain", "adapt"]),
    ("adapt_without_init_from", {**ADAPT, "init_from": ""}, 1, ["init_from", "adapt"]),
    ("adapt_init_from_missing", {**ADAPT, "init_from": "/nonexistent/run"}, 1, ["init_from", "no such directory"]),
    ("unknown_source_kind", {"data.base.kind": "ftp"}, 1, ["data.base.kind", "ftp", "corpus"]),
    ("babi_tasks_out_of_range", {**ADAPT, "data.target.babi_tasks": "1,21"}, 1,
     ["data.target.babi_tasks", "1..20"]),
    ("babi_tasks_not_numbers", {**ADAPT, "data.target.babi_tasks": "one"}, 1,
     ["data.target.babi_tasks"]),
    ("records_without_dataset", {"data.base.kind": "records", "data.base.path": "/nonexistent"}, 1,
     ["data.base.path", "dataset_info.json"]),
    ("no_token_budget", {"train.total_tokens": 0}, 1, ["train.total_tokens", "budget"]),
    ("negative_skips", {"train.max_nonfinite_skips": -1}, 1, ["train.max_nonfinite_skips", "≥ 0"]),
    ("save_at_ptpp_not_numbers", {"train.save_at_ptpp": "1,two"}, 1, ["train.save_at_ptpp", "numbers"]),
]


@pytest.mark.parametrize("overrides,devices,words", [c[1:] for c in VALIDATE_CASES], ids=[c[0] for c in VALIDATE_CASES])
def test_validate_names_the_field(tiny_config_factory, overrides, devices, words):
  with pytest.raises(ConfigError) as e:
    config_lib.validate(tiny_config_factory(**overrides), devices)
  for w in words:
    assert w in str(e.value), (w, str(e.value))


@pytest.fixture(scope="module")
def tokenizer(pretrained):
  return str(pretrained[0] / "tokenizer.model")


def _write(root: Path, files: dict[str, bytes]) -> str:
  root.mkdir(parents=True, exist_ok=True)
  for name, data in files.items():
    (root / name).write_bytes(data)
  return str(root / "{split}_*.txt")


def _run_error(cfg, workdir, exc):
  with pytest.raises(exc) as e:
    loop.run(cfg, str(workdir))
  return str(e.value)


def test_missing_data_files(tiny_config_factory, tokenizer, tmp_path):
  msg = _run_error(tiny_config_factory(**{"data.base.path": str(tmp_path / "nothing/{split}_*.txt"),
                                          "data.tokenizer": tokenizer}), tmp_path / "w", DataError)
  # the validation split is opened first (before compiling), so either split's pattern may be named
  assert "no files match" in msg and ("nothing/train_*.txt" in msg or "nothing/validation_*.txt" in msg)


def test_empty_split(tiny_config_factory, tokenizer, tmp_path):
  path = _write(tmp_path / "d", {"train_0.txt": b"Some text. " * 200, "validation_0.txt": b"  \n\n"})
  msg = _run_error(tiny_config_factory(**{"data.base.path": path, "data.tokenizer": tokenizer}), tmp_path / "w",
                   DataError)
  assert "validation_*.txt" in msg and "no records" in msg


def test_invalid_utf8(tiny_config_factory, tokenizer, tmp_path):
  path = _write(tmp_path / "d", {"train_0.txt": b"ok", "validation_0.txt": b"good text " * 50 + b"\xff\xfe bad"})
  msg = _run_error(tiny_config_factory(**{"data.base.path": path, "data.tokenizer": tokenizer}), tmp_path / "w",
                   DataError)
  assert "validation_0.txt" in msg and "not valid UTF-8" in msg and "byte 500" in msg


def test_tokenizer_file_missing(tiny_config_factory, tmp_path):
  msg = _run_error(tiny_config_factory(**{"data.tokenizer": str(tmp_path / "nope.model")}), tmp_path / "w",
                   DataError)
  assert "nope.model" in msg and "does not exist" in msg


def test_tokenizer_not_sentencepiece(tiny_config_factory, tmp_path):
  (tmp_path / "junk.model").write_text("not a model")
  msg = _run_error(tiny_config_factory(**{"data.tokenizer": str(tmp_path / "junk.model")}), tmp_path / "w",
                   DataError)
  assert "junk.model" in msg and "not a SentencePiece model" in msg


def test_resume_with_another_tokenizer(tiny_config_factory, pretrained, tmp_path):
  from cpt_jax.data.tokenizer import train_tokenizer  # pylint: disable=g-import-not-at-top
  other = train_tokenizer(["a b c d e f g. " * 100, "hello world " * 100], tmp_path / "other.model", 300)
  workdir = tmp_path / "w"
  shutil.copytree(pretrained[0], workdir)
  before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  msg = _run_error(tiny_config_factory(**{"data.tokenizer": str(other.path)}), workdir, DataError)
  assert "other.model" in msg and "vocab 300" in msg and "vocab 400" in msg and "new --workdir" in msg
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_vocab_too_small_to_train_a_tokenizer(tiny_config_factory, tmp_path):
  msg = _run_error(tiny_config_factory(**{"data.vocab_size": 50, "data.data_dir": str(tmp_path / "data")}),
                   tmp_path / "w", DataError)
  assert "data.vocab_size" in msg


def test_adapt_tokenizer_vocab_does_not_match_start_model(tiny_config_factory, pretrained, tmp_path):
  from cpt_jax.data.tokenizer import train_tokenizer  # pylint: disable=g-import-not-at-top
  other = train_tokenizer(["a b c d e f g. " * 100, "hello world " * 100], tmp_path / "other.model", 300)
  cfg = tiny_config_factory(**{"stage": "adapt", "init_from": str(pretrained[0]), "data.target.kind": "files",
                               "data.target.path": tiny_config_factory().data.base.path,
                               "data.tokenizer": str(other.path)})
  msg = _run_error(cfg, tmp_path / "w", checkpoint.CheckpointError)
  assert "does not match the model" in msg and "wte: checkpoint (400, 64) vs model (300, 64)" in msg
  assert "tokenizer" in msg


def test_checkpoint_from_another_model_size(tiny_config_factory, pretrained, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(pretrained[0], workdir)
  config_before = (workdir / "config.json").read_text()
  steps_before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  msg = _run_error(tiny_config_factory(**{"model.num_layers": 3}), workdir, checkpoint.CheckpointError)
  assert "does not match the model" in msg and "blocks" in msg and "another model size" in msg
  assert (workdir / "config.json").read_text() == config_before  # nothing saved is lost
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == steps_before


def test_read_only_workdir(tiny_config_factory, tmp_path):
  if os.geteuid() == 0:  # root writes anywhere chmod allows; /sys/kernel refuses new files even to root
    workdir = Path("/sys/kernel")
    if not workdir.is_dir():
      pytest.skip("no read-only directory to test with")
  else:
    workdir = tmp_path / "ro"
    workdir.mkdir()
    workdir.chmod(0o555)
  msg = _run_error(tiny_config_factory(), workdir, ConfigError)
  assert str(workdir) in msg and "not writable" in msg


def test_no_pickle_of_data_read_from_disk():
  root = Path(__file__).parent.parent / "cpt_jax"
  bad = []
  for path in sorted(root.rglob("*.py")):
    for n, line in enumerate(path.read_text().splitlines(), 1):
      code = line.split("#")[0]
      if re.search(r"pickle\.loads?\(|allow_pickle\s*=\s*True|dill\.load|joblib\.load|torch\.load", code):
        bad.append(f"{path}:{n}: {line.strip()}")
      if re.search(r"\bnp\.load\(", code) and "allow_pickle=False" not in code:
        bad.append(f"{path}:{n}: {line.strip()} (np.load without allow_pickle=False)")
  assert not bad, bad


# ---- through the CLI: exit code, one `error:` line, no traceback ----

@pytest.fixture(scope="module")
def cli(corpus_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("cli")
  return cli_utils.cli_env(root, corpus_dir), root


def _cli_cases(pretrained_dir: Path, root: Path):
  wrong_size = root / "wrong_size"
  shutil.copytree(pretrained_dir, wrong_size)
  (root / "junk.model").write_text("junk")
  return [  # (id, args, env changes, exit code, key words)
      ("unknown_key", ["--config.model.n_layers=3"], {}, 2, ["unknown config field", "n_layers"]),
      ("wrong_type", ["--config.data.batch_size=eight"], {}, 2, ["batch_size", "eight"]),
      ("missing_config_file", ["--config=configs/nope.py"], {}, 2, ["configs/nope.py", "does not exist"]),
      ("not_sentencepiece", [], {"CPT_JAX_TEST_TOKENIZER": str(root / "junk.model")}, 2,
       ["junk.model", "not a SentencePiece model"]),
      ("another_model_size", ["--config.model.d_model=32"], {"CPT_JAX_TEST_TOKENIZER": ""}, 2,
       ["does not match the model", "differences", "blocks/0/", "checkpoint (64,) vs model (32,)"]),
      ("nan_loss", ["--config.opt.lr=1e30", "--config.opt.warmup_tokens=0", "--config.opt.clip_norm=0.0"], {}, 3,
       ["non-finite loss", "at step 2", "max_nonfinite_skips"]),
      ("workdir_not_creatable", [], {}, 2, ["cannot write", "writable --workdir"]),
  ], {"another_model_size": wrong_size, "workdir_not_creatable": root / "a_file" / "run"}


def test_cli_errors(cli, pretrained):
  env, root = cli
  (root / "a_file").write_text("a file, not a directory")
  cases, workdirs = _cli_cases(pretrained[0], root)

  def one(case):
    name, args, env_changes, _, _ = case
    workdir = workdirs.get(name, root / name)
    cmd = cli_utils.train_cmd(workdir, *args)
    if any(a.startswith("--config=") for a in args):
      cmd = [c for c in cmd if c != f"--config={cli_utils.CONFIG}"]
    import subprocess  # pylint: disable=g-import-not-at-top
    return subprocess.run(cmd, env={**env, **env_changes}, cwd=cli_utils.REPO, capture_output=True, text=True,
                          timeout=300, check=False)

  with ThreadPoolExecutor(2) as pool:
    results = list(pool.map(one, cases))
  for (name, _, _, code, words), r in zip(cases, results):
    errors = cli_utils.error_lines(r.stderr)
    assert r.returncode == code, (name, r.returncode, r.stderr[-3000:])
    assert len(errors) == 1 and "Traceback" not in r.stderr, (name, r.stderr[-3000:])
    for w in words:
      assert w in errors[0], (name, w, errors[0])


def test_self_replay_on_the_fly_refused_on_several_processes(tiny_config_factory, monkeypatch):
  """Each process would call the one global sampler with its own shard's key: refused with what to do."""
  import jax  # pylint: disable=g-import-not-at-top
  from cpt_jax import build, model as model_lib, sharding  # pylint: disable=g-import-not-at-top
  cfg = tiny_config_factory(**ADAPT, **{"replay.kind": "self", "replay.ratio": 0.25, "replay.samples": ""})
  bundle = build.model_bundle(model_lib.ModelConfig.from_config(cfg.model, cfg.data.vocab_size),
                              sharding.make_mesh(cfg.mesh))
  assert build.replay_stream(cfg, None, None, bundle, None) is not None  # one process: fine
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  with pytest.raises(ConfigError) as e:
    build.replay_stream(cfg, None, None, bundle, None)
  assert "replay.samples" in str(e.value) and "generate_replay.py" in str(e.value)
