"""Self-generated replay written ahead as a records dataset: rows sampled from a run's checkpoint (BOS
prompt, temperature 1, full context) into OUT/self_replay/1.0.0, which `replay.kind=self replay.samples=...`
reads. `python -m cpt_jax.replay_dataset --workdir RUN --out DIR --tokens N [--seed S] [--cpu-devices K]`.

Kept apart from `cpt_jax.replay` (the on-the-fly stream that `build` uses) because it loads a run through
`build`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax
import numpy as np

from cpt_jax import build, checkpoint as ckpt_lib, config as config_lib, console, host_memory, sampling
from cpt_jax.data import records


def generate_replay_dataset(workdir: str, out_dir: str, num_tokens: int, seed: int = 0, batch: int = 64,
                            validation_rows: int = 0, step: int | None = None) -> Path:
  """Samples ≥ `num_tokens` tokens from the run in `workdir` into a records dataset ("tokens" rows).

  Chunks are written one file per batch as they are made (atomically), so an interrupted generation
  resumes where it stopped; the same seed gives the same dataset.
  """
  out = Path(out_dir)
  name = "self_replay"
  if records.exists(out, name):
    logging.info("replay dataset already complete: %s", records.dataset_dir(out, name))
    return records.dataset_dir(out, name)
  _, bundle, params, tokenizer, _ = build.load_run(workdir, step)
  row_tokens = bundle.cfg.max_len
  num_rows = -(-num_tokens // row_tokens) + validation_rows
  chunks_dir = out / "chunks"
  chunks_dir.mkdir(parents=True, exist_ok=True)
  sampler = sampling.make_sampler(bundle.graphdef, bundle.cfg, batch, bos_id=tokenizer.bos_id)
  devices = jax.devices()
  logging.info("sampling %d rows per call on %d %s device(s)", batch, len(devices), devices[0].platform)
  key = jax.random.key(seed)
  num_chunks = -(-num_rows // batch)
  for c in range(num_chunks):
    path = chunks_dir / f"chunk_{c:06d}.npy"
    if path.exists():
      continue
    rows = np.asarray(sampler(params, jax.random.fold_in(key, c)))
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, rows, allow_pickle=False)
    os.replace(tmp, path)
    logging.info("replay chunk %d/%d written", c + 1, num_chunks)
  all_rows = np.concatenate([np.load(chunks_dir / f"chunk_{c:06d}.npy", allow_pickle=False)
                             for c in range(num_chunks)])[:num_rows]
  splits = {"train": ({"tokens": r} for r in all_rows[validation_rows:])}
  if validation_rows:
    splits["validation"] = ({"tokens": r} for r in all_rows[:validation_rows])
  path = records.write_dataset(out, name, splits, {"tokens": "tokens"},
                               description=f"self-generated replay from {workdir}, seed {seed}")
  return path


def use_cpu_devices(count: int, batch: int) -> None:
  """Before JAX starts its backends: `count` CPU devices. `build.load_run` puts every device on the data axis,
  so each decodes batch/count rows. One device leaves the second core of a 2-core CPU nearly idle while
  decoding (docs/performance.md)."""
  if count < 1 or batch % count:
    console.fail(f"--cpu-devices {count}: must be ≥ 1 and divide --batch {batch} (each device decodes "
                 "batch/cpu-devices rows)")
  if count > 1:
    try:
      jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX refuses once a backend is up (an in-process caller that already used JAX)
      console.fail(f"--cpu-devices {count} must be set before JAX starts: run python -m cpt_jax.replay_dataset "
                   "as its own process")


def main(argv=None) -> None:
  parser = console.ArgumentParser(description="Write self-generated replay samples of a run's checkpoint.")
  parser.add_argument("--workdir", required=True, help="workdir of the (pretraining) run to sample from")
  parser.add_argument("--out", required=True, help="output directory (the dataset is OUT/self_replay/1.0.0)")
  parser.add_argument("--tokens", type=int, required=True, help="tokens to sample (rounded up to whole rows)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--batch", type=int, default=64, help="sequences sampled per call")
  parser.add_argument("--step", type=int, default=-1, help="checkpoint step (-1: latest)")
  parser.add_argument("--validation-rows", type=int, default=0)
  parser.add_argument("--cpu-devices", type=int, default=1,
                      help="on a host without an accelerator: split the CPU into this many JAX devices, each "
                           "decoding batch/K rows (one device already decodes in concurrent row groups, one per "
                           "core: sampling.cpu_row_groups). The samples are "
                           "one device's up to floating-point rounding (a draw at a boundary can change, and its row "
                           "with it). No effect where an accelerator is the default device")
  args = parser.parse_args(argv)
  use_cpu_devices(args.cpu_devices, args.batch)
  console.setup_logging(args.out, "generate_replay.log")  # the libraries' INFO lines go to the file only
  try:
    path = generate_replay_dataset(args.workdir, args.out, args.tokens, args.seed, args.batch, args.validation_rows,
                                   None if args.step < 0 else args.step)
  except (records.DataError, ckpt_lib.CheckpointError, config_lib.ConfigError) as e:
    console.fail(str(e))
  print(path)


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()
  main()
