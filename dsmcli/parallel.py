"""Data parallelism with JAX's own machinery: a 1-D ``jax.sharding.Mesh`` over the ``data``
axis, the batch sharded along it (``P('data')``), parameters, optimiser state and the on-device
data set replicated (``P()``). XLA's SPMD partitioner turns the batch mean of the gradient into
an all-reduce; nothing is hand-written.

Several hosts: ``parallel.distributed: true`` makes ``dsm train`` call ``initialize`` (that is
``jax.distributed.initialize`` with the coordinator address, process count and id from the
config, or auto-detected from the cluster environment when omitted) before anything touches a
JAX backend; the mesh then spans every device of every process, every process computes every
step, and only process 0 writes files (``is_writer``). On CPU the processes all-reduce through
gloo over TCP (``jax_cpu_collectives_implementation``). Commands that run in one process
(``dsm sample``, ``dsm eval``) never initialise the distributed runtime: with a run's
``distributed: true`` they use that process's devices.

Failure of a peer never leaves the others waiting forever (measured with two CPU processes):
a peer that dies (crash, SIGKILL) makes the next all-reduce fail at once (gloo: connection reset),
so process 0 records ``status: failed`` with the error in ``summary.json``; the survivor's exit
then waits in JAX's shutdown barrier until the coordination service declares the peer dead after
``HEARTBEAT_TIMEOUT_S`` and aborts the process (SIGABRT, exit 134). If process 0 (the
coordinator) dies, the others abort within a second. A peer that hangs (e.g. SIGSTOP) blocks the
collective until ``HEARTBEAT_TIMEOUT_S``, then the others abort (the summary still says
``running``). A process that never arrives makes the others fail in ``initialize`` after
``INIT_TIMEOUT_S``. Every process must load the same data (same seed or same files): the data
set is put on the mesh as replicated and JAX does not check that the copies agree.
"""

from __future__ import annotations

import os
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


INIT_TIMEOUT_S = 300  # how long initialize waits for every process to connect (JAX's default)
# A process whose heartbeats stop this long is declared dead and the others abort (JAX's default
# is 100 s; DSM_HEARTBEAT_TIMEOUT_S shortens it, e.g. in tests).
HEARTBEAT_TIMEOUT_S = int(os.environ.get("DSM_HEARTBEAT_TIMEOUT_S") or 100)

_initialized = False


def initialize(cfg: ParallelConfig) -> None:
    """Start the multi-process runtime when ``cfg.distributed`` (once per process; a no-op
    otherwise). Must run before anything initialises a JAX backend (creating an array, even
    ``jax.devices()``): ``dsm train`` calls it before building the experiment."""
    global _initialized
    if not cfg.distributed or _initialized:
        return
    import jax

    # Cross-process collectives of the CPU backend (the flag configures only the CPU client, so
    # it is inert for GPU/TPU meshes). Without an implementation, XLA:CPU cannot all-reduce
    # across processes. gloo (TCP) is JAX's default today; set it explicitly so that an older or
    # future default cannot leave it unset, unless the user chose one (e.g. mpi) in the env.
    if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=cfg.coordinator_address,
            num_processes=cfg.num_processes,
            process_id=cfg.process_id,
            initialization_timeout=INIT_TIMEOUT_S,
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
        )
    except ValueError as e:  # e.g. no coordinator address and no cluster environment to detect
        raise UserError(f"parallel.distributed: {e}") from None
    _initialized = True


def mesh(cfg: ParallelConfig, batch_size: int | None = None):
    """The device mesh for ``cfg``: every device of every process once ``initialize`` has run,
    else this process's devices."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

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
