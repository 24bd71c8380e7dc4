"""Device mesh, logical-axis rules and process-local → global arrays: every sharding decision lives here.

The model names logical axes ("vocab", "embed", "heads", "mlp", …); RULES map them to the mesh axes
("data", "fsdp", "tensor"). Batches are split over ("data", "fsdp"): FSDP shards parameters *and* the
batch, as in MaxText.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# logical axis -> mesh axis (or None: replicated). Order matters only for readability.
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
)


class MeshError(ValueError):
  """The configured mesh cannot be built on the available devices."""


# A CPU has one device; sharded layouts can still be tried on several fake ones.
_FAKE_DEVICES = " (to try a sharded mesh on a CPU, run with XLA_FLAGS=--xla_force_host_platform_device_count=8)"


def resolve_mesh_shape(shape: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
  """Fills in the one -1 axis so that the product equals the device count, or says why it cannot."""
  sizes = [int(shape[a]) for a in MESH_AXES]
  desc = ", ".join(f"mesh.{a}={s}" for a, s in zip(MESH_AXES, sizes, strict=True))
  if sizes.count(-1) > 1:
    raise MeshError(f"only one mesh axis may be -1, got {desc}")
  if any(s == 0 or s < -1 for s in sizes):
    raise MeshError(f"mesh axis sizes must be positive or -1, got {desc}")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise MeshError(f"{desc}: the fixed axes ({known}) do not divide the {num_devices} devices{_FAKE_DEVICES}")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise MeshError(
        f"{desc} needs {math.prod(sizes)} devices but {num_devices} are available; "
        f"set one axis to -1 to use all devices{_FAKE_DEVICES}")
  return tuple(sizes)


def make_mesh(shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  sizes = resolve_mesh_shape(shape, len(devices))
  # mesh_utils orders devices by the physical topology (TPU ICI rings, GPU NVLink islands; a plain reshape
  # elsewhere). jax.sharding.Mesh keeps Auto axes (GSPMD propagation), which jax.make_mesh would make Explicit.
  device_grid = mesh_utils.create_device_mesh(sizes, devices, allow_split_physical_axes=True)
  return Mesh(device_grid, MESH_AXES)


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules: Sequence[tuple[str, str | None]] = DEFAULT_RULES) -> P:
  """PartitionSpec for one array; a dim that the mesh axis does not divide stays replicated."""
  rule_map = dict(rules)
  spec, used = [], set()
  for name, dim in zip(logical_axes, shape, strict=True):
    axis = rule_map.get(name) if name is not None else None
    if axis is None or axis in used or mesh.shape[axis] == 1 or dim % mesh.shape[axis]:
      spec.append(None)
      continue
    used.add(axis)
    spec.append(axis)
  return P(*spec)


def param_shardings(logical_axes_tree: Any, abstract_params: Any, mesh: Mesh,
                    rules: Sequence[tuple[str, str | None]] = DEFAULT_RULES) -> Any:
  return jax.tree.map(
      lambda axes, x: NamedSharding(mesh, logical_to_spec(axes, x.shape, mesh, rules)),
      logical_axes_tree, abstract_params, is_leaf=lambda t: isinstance(t, tuple))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_shards(mesh: Mesh) -> int:
  return mesh.shape["data"] * mesh.shape["fsdp"]


def mesh_of(tree: Any) -> Mesh | None:
  """The mesh the arrays of `tree` (a model's parameters, or their shardings) are laid out on; None if they are
  not on one."""
  for leaf in jax.tree.leaves(tree):
    leaf_sharding = leaf if isinstance(leaf, NamedSharding) else getattr(leaf, "sharding", None)
    if isinstance(leaf_sharding, NamedSharding):
      return leaf_sharding.mesh
  return None


def shard_rows(x: jax.Array, mesh: Mesh | None) -> jax.Array:
  """Inside a jit: `x`'s leading (row) axis split over the batch axes, so each device computes only its
  rows. Unchanged without a mesh, with one batch shard, or when the rows do not divide evenly."""
  if mesh is None or batch_shards(mesh) == 1 or x.shape[0] % batch_shards(mesh):
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh))


class RowSplit:
  """The train and eval steps' activation layout: each device computes its batch shard's rows
  (model.GPT.hidden applies it to the residual stream). Identity without a mesh or with one batch shard."""

  def __init__(self, mesh: Mesh | None):
    self.mesh = mesh if mesh is not None and batch_shards(mesh) > 1 else None

  def __call__(self, x: jax.Array) -> jax.Array:
    return shard_rows(x, self.mesh)

  def gathered(self, w: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """A weight all-gathered over the batch axes before use, as FSDP does. For an embedding table this
    matters: a lookup into a table split along D gives D-split rows, which XLA can turn into row-split ones
    only by replicating them ("Involuntary full rematerialization")."""
    if self.mesh is None:
      return w
    return gather_over_batch_axes(w, self.mesh, logical_to_spec(logical_axes, w.shape, self.mesh))

  def gathered_tree(self, params: Any, specs: Sequence[P | None]) -> Any:
    """Every leaf of `params` (laid out as `specs`, its leaves' PartitionSpecs taken outside the jit) gathered
    over the batch axes: a decode loop that splits rows gathers FSDP-split weights once, not at every token."""
    if self.mesh is None:
      return params
    leaves, treedef = jax.tree.flatten(params)
    return treedef.unflatten([x if spec is None else gather_over_batch_axes(x, self.mesh, spec)
                              for x, spec in zip(leaves, specs, strict=True)])


def gather_over_batch_axes(w: jax.Array, mesh: Mesh, spec: P) -> jax.Array:
  """Inside a jit: `w` (laid out as `spec`) all-gathered over the batch axes, still split over the others."""

  def without_batch_axes(axis):
    if isinstance(axis, tuple):
      return tuple(a for a in axis if a not in BATCH_AXES) or None
    return None if axis in BATCH_AXES else axis

  return jax.lax.with_sharding_constraint(w, NamedSharding(mesh, P(*map(without_batch_axes, spec))))


def local_batch_shards(mesh: Mesh) -> list[int]:
  """Indices (in global order) of the batch shards this process's devices hold: its rows of every global
  batch are those shards' rows, in that order (as jax.make_array_from_process_local_data expects)."""
  index_map = batch_sharding(mesh).addressable_devices_indices_map((batch_shards(mesh),))
  return sorted({idx[0].start or 0 for idx in index_map.values()})


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's rows into one global array sharded over the batch axes."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def maybe_initialize_distributed(coordinator: str = "", num_processes: int = 0, process_id: int = -1) -> None:
  """Joins a multi-process run: explicit flags, else the environment (TPU pods find peers by themselves)."""
  if jax.distributed.is_initialized():
    return
  if coordinator:
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
  elif _on_multihost_tpu():
    jax.distributed.initialize()
  else:
    return
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def _on_multihost_tpu() -> bool:
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h]) > 1
