"""Which devices run the replicas, and how much memory each one has.

On a CPU the host is split into CPU devices before JAX starts (one per core unless told
otherwise: XLA:CPU runs these small programs on about one core each); a GPU host's devices are
its GPUs. Several processes join under `jax.distributed` (see `initialize_distributed`).
A foundation module: it imports nothing of optax_lab's stages.
"""

from __future__ import annotations

import os

from optax_lab.errors import UsageError

__all__ = ["configure_devices", "cores", "host_available_bytes", "memory_per_device"]


def cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def configure_devices(requested: int | None, flag: str = "--devices") -> None:
    """Split the CPU into devices before JAX starts: `requested`, else env JAX_NUM_CPU_DEVICES
    when set, else one per core. On a GPU host its GPUs are the devices and `requested` may not
    exceed them (checked once JAX is up). Bad counts are UsageErrors naming `flag`."""
    import jax

    if requested is not None and requested < 1:
        raise UsageError(f"{flag} {requested} must be a positive integer, e.g. {flag} 2")
    count = requested or (None if "JAX_NUM_CPU_DEVICES" in os.environ else cores())
    try:
        if count is not None:
            jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX already started in this process (a test calling main): keep its devices
        if requested is not None and requested > jax.local_device_count():
            raise UsageError(f"{flag} {requested}: this process already runs JAX on "
                             f"{jax.local_device_count()} device(s); pass {flag} in a fresh process") from None
    if jax.default_backend() != "cpu" and requested is not None and requested > jax.local_device_count():
        raise UsageError(f"{flag} {requested}: this host has {jax.local_device_count()} "
                         f"{jax.default_backend().upper()} device(s); give at most that many")


def host_available_bytes() -> int:
    """Memory the host can still give (MemAvailable), else its physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_per_device(devices: int) -> int:
    """Bytes one of `devices` local devices can hold: an accelerator's own limit (what XLA's
    allocator reports), or on a CPU the host's available memory shared by its CPU devices."""
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    if jax.default_backend() != "cpu" and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return host_available_bytes() // max(1, devices)
