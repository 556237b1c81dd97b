"""Data parallelism with JAX's own machinery: a 1-D ``jax.sharding.Mesh`` over the ``data``
axis, the batch sharded along it (``P('data')``), parameters, optimiser state and the on-device
data set replicated (``P()``). XLA's SPMD partitioner turns the batch mean of the gradient into
an all-reduce; nothing is hand-written.

Several hosts: ``parallel.distributed: true`` calls ``jax.distributed.initialize`` (with the
coordinator address, process count and id from the config, or auto-detected from the cluster
environment when omitted); the mesh then spans every device of every process, and only process
0 writes the run directory.
"""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeInt, PositiveInt

from dsmcli.errors import UserError
from dsmcli.section import Section

AXIS = "data"


class ParallelConfig(Section):
    devices: PositiveInt | None = None  # devices on the data axis (default: all)
    distributed: bool = False
    coordinator_address: str | None = None  # host:port of process 0
    num_processes: PositiveInt | None = None
    process_id: NonNegativeInt | None = None
    platform: Literal["default", "cpu"] = "default"


_initialized = False


def mesh(cfg: ParallelConfig, batch_size: int | None = None):
    """The device mesh for ``cfg`` (initialising the distributed runtime once if asked)."""
    global _initialized
    import jax
    import numpy as np
    from jax.sharding import Mesh

    if cfg.distributed and not _initialized:
        jax.distributed.initialize(
            coordinator_address=cfg.coordinator_address,
            num_processes=cfg.num_processes,
            process_id=cfg.process_id,
        )
        _initialized = True
    devices = jax.devices("cpu") if cfg.platform == "cpu" else jax.devices()
    if cfg.devices is not None:
        if cfg.devices > len(devices):
            raise UserError(f"parallel.devices: {cfg.devices} requested but JAX sees {len(devices)} ({devices[0].platform})")
        devices = devices[: cfg.devices]
    if batch_size is not None and batch_size % len(devices):
        raise UserError(
            f"train.batch_size: {batch_size} is not divisible by the {len(devices)} devices of the data axis; "
            f"change train.batch_size or set parallel.devices"
        )
    return Mesh(np.asarray(devices), (AXIS,))


def replicated(m):
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(m, PartitionSpec())


def batch_sharded(m):
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(m, PartitionSpec(AXIS))


def is_writer() -> bool:
    """Only process 0 writes files (every process computes)."""
    import jax

    return jax.process_index() == 0


def to_host(leaf):
    """A replicated array as numpy, also when it spans several processes."""
    import numpy as np

    if getattr(leaf, "is_fully_addressable", True):
        return np.asarray(leaf)
    return np.asarray(leaf.addressable_data(0))
