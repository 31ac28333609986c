"""Data parallelism: a ``Mesh`` over one ``'data'`` axis of every device, batch sharded, params
replicated; multi-host through ``jax.distributed.initialize``.

Every process computes the same *global* host batch (data order is a pure function of the step)
and contributes the rows its devices hold, so one, four or eight devices, on one host or several,
see the same examples in the same order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrnn.train.config import ConfigError, DistributedConfig

__all__ = ["Runtime", "initialize_distributed", "make_runtime"]

_ENV = {
    "coordinator_address": "JAXRNN_COORDINATOR_ADDRESS",
    "num_processes": "JAXRNN_NUM_PROCESSES",
    "process_id": "JAXRNN_PROCESS_ID",
}


def initialize_distributed(cfg: DistributedConfig) -> bool:
    """Calls ``jax.distributed.initialize`` when the config or environment asks for it.

    Environment variables (``JAXRNN_COORDINATOR_ADDRESS``, ``JAXRNN_NUM_PROCESSES``,
    ``JAXRNN_PROCESS_ID``) override the config. ``enabled: on`` with no address lets JAX detect
    the cluster (TPU pods, SLURM, ...). Returns whether JAX is now multi-process."""
    vals = {k: getattr(cfg, k) for k in _ENV}
    for k, env in _ENV.items():
        if os.environ.get(env):
            vals[k] = os.environ[env] if k == "coordinator_address" else int(os.environ[env])
    enabled = cfg.enabled
    if enabled == "off":
        return False
    if enabled == "auto" and not vals["coordinator_address"]:
        return False
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    kwargs = {k: v for k, v in vals.items() if v is not None}
    jax.distributed.initialize(**kwargs)
    return jax.process_count() > 1


@dataclass
class Runtime:
    """Where a run computes: the mesh and helpers to move host data onto it."""
    mesh: Mesh

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    @property
    def process_index(self) -> int:
        return jax.process_index()

    @property
    def process_count(self) -> int:
        return jax.process_count()

    @property
    def is_main(self) -> bool:
        return jax.process_index() == 0

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, P("data"))

    def check_batch(self, n: int, what: str = "train.batch_size") -> None:
        if n % self.num_devices:
            raise ConfigError(f"{what}={n} must be divisible by the number of devices "
                              f"({self.num_devices}) for data parallelism")

    def shard_batch(self, tree: Any) -> Any:
        """Global host arrays (same on every process) -> arrays sharded on their first axis."""
        sh = self.batch_sharding

        def put(x):
            x = np.asarray(x)
            self.check_batch(x.shape[0], f"a batch axis of size {x.shape[0]}")
            return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])
        return jax.tree.map(put, tree)

    def replicate(self, tree: Any) -> Any:
        """Host (or single-device) values, equal on every process -> replicated arrays."""
        sh = self.replicated

        def put(x):
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])
        return jax.tree.map(put, tree)

    def to_host(self, tree: Any) -> Any:
        """Any arrays (replicated or sharded, one process or many) -> numpy on every process."""
        def get(x):
            if not isinstance(x, jax.Array):
                return np.asarray(x)
            if x.is_fully_addressable:
                return np.asarray(x)
            if x.sharding.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            from jax.experimental import multihost_utils
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.tree.map(get, tree)


def make_runtime(cfg: Optional[DistributedConfig] = None) -> Runtime:
    """Initializes multi-host JAX if configured, then builds a 1-D ``'data'`` mesh of all devices."""
    if cfg is not None:
        initialize_distributed(cfg)
    devices = np.array(jax.devices())
    return Runtime(mesh=Mesh(devices, ("data",)))
