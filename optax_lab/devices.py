"""Which devices run the replicas, and how much memory each one has.

On a CPU the host is split into CPU devices before JAX starts (one per core unless told
otherwise: XLA:CPU runs these small programs on about one core each); a GPU host's devices are
its GPUs. Several processes join under `jax.distributed` (see `initialize_distributed`).
A foundation module: it imports nothing of optax_lab's stages.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from pathlib import Path

from optax_lab.errors import UsageError

__all__ = [
    "DISTRIBUTED_ENV",
    "MAX_REPLICAS",
    "configure_devices",
    "cores",
    "host_available_bytes",
    "initialize_distributed",
    "is_main_process",
    "machine_record",
    "memory_per_device",
]

# Several processes (hosts) join when all three are set, the coordinator being process 0's
# host:port (JAX reads the first itself); Slurm, Open MPI and the other clusters JAX detects
# need none of them.
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
DISTRIBUTED_TIMEOUT_S = 60
# Replicas (points x seeds) one call of a program holds at most; more run as several calls of the
# same compiled program. Measured on a 2-core CPU: throughput saturates at 8-32 replicas.
MAX_REPLICAS = 64


def cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_record() -> dict[str, object]:
    """This host as reports name it: its name, CPU and cores, and the JAX devices it runs on."""
    import jax

    device = jax.devices()[0]
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": cores(),
        "devices": f"{jax.local_device_count()} x {device.platform} ({device.device_kind})",
    }


def configure_devices(
    requested: int | None,
    flag: str = "--devices",
    distributed: bool = True,
    coordinator_timeout: float = DISTRIBUTED_TIMEOUT_S,
) -> int:
    """Set up the devices before JAX starts; returns the process count. Splits the CPU into
    devices: `requested`, else env JAX_NUM_CPU_DEVICES when set, else one per core; then joins
    the other processes of a multi-process run (`initialize_distributed`). On a GPU host its
    GPUs are the devices and `requested` may not exceed them. Bad counts are UsageErrors naming
    `flag`."""
    import jax

    if requested is not None and requested < 1:
        raise UsageError(f"{flag} {requested} must be a positive integer, e.g. {flag} 2")
    count = requested or (None if "JAX_NUM_CPU_DEVICES" in os.environ else cores())
    try:
        if count is not None:
            jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX already started in this process (a test calling main): keep its devices
        if requested is not None and requested > jax.local_device_count():
            raise UsageError(
                f"{flag} {requested}: this process already runs JAX on "
                f"{jax.local_device_count()} device(s); pass {flag} in a fresh process"
            ) from None
    processes = initialize_distributed(coordinator_timeout) if distributed else 1
    if requested is not None and jax.default_backend() != "cpu" and requested > jax.local_device_count():
        raise UsageError(
            f"{flag} {requested}: this host has {jax.local_device_count()} "
            f"{jax.default_backend().upper()} device(s); give at most that many"
        )
    return processes


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


def _cluster_detected() -> bool:
    """A multi-process job of a scheduler JAX detects by itself (Slurm, Open MPI)."""
    slurm = "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1
    return slurm or "OMPI_MCA_orte_hnp_uri" in os.environ


def _distributed_settings() -> tuple[str, int, int] | None:
    """(coordinator, processes, this process) from DISTRIBUTED_ENV, None when none is set; a
    half-set or malformed environment is a UsageError naming what is wrong."""
    values = {name: os.environ.get(name, "").strip() for name in DISTRIBUTED_ENV}
    given = [name for name, value in values.items() if value]
    if not given:
        return None
    if len(given) < len(DISTRIBUTED_ENV):
        missing = [name for name in DISTRIBUTED_ENV if name not in given]
        raise UsageError(
            f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not: set all of {', '.join(DISTRIBUTED_ENV)} "
            "for a multi-process run, or none of them"
        )
    address, count, index = values["JAX_COORDINATOR_ADDRESS"], values["JAX_NUM_PROCESSES"], values["JAX_PROCESS_ID"]
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"JAX_COORDINATOR_ADDRESS={address!r} must be host:port of process 0, e.g. 10.0.0.1:1234")
    if not count.isdigit() or int(count) < 1:
        raise UsageError(f"JAX_NUM_PROCESSES={count!r} must be a positive integer, e.g. 2")
    if not index.isdigit() or int(index) >= int(count):
        raise UsageError(
            f"JAX_PROCESS_ID={index!r} must be an integer from 0 to JAX_NUM_PROCESSES - 1 "
            f"({int(count) - 1 if count.isdigit() else '?'})"
        )
    return address, int(count), int(index)


def _wait_for(address: str, timeout_s: float) -> None:
    """Block until the coordinator accepts connections, at most `timeout_s`: JAX itself would
    abort the process (no exception to catch) when its own wait runs out."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise UsageError(
                    f"the coordinator JAX_COORDINATOR_ADDRESS={address} did not answer within "
                    f"{timeout_s:g} s: start process 0 there first, or fix the address"
                ) from None
            time.sleep(0.2)


def _check_port_free(address: str) -> None:
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: TIME_WAIT is no conflict
        try:
            probe.bind((host.strip("[]"), int(port)))
        except OSError as error:
            raise UsageError(
                f"process 0 cannot serve JAX_COORDINATOR_ADDRESS={address} ({error.strerror}): "
                "choose a free port on this host"
            ) from None


def initialize_distributed(timeout_s: float = DISTRIBUTED_TIMEOUT_S) -> int:
    """Join the other processes under `jax.distributed` when the environment says so
    (DISTRIBUTED_ENV, or a cluster JAX detects); call after `configure_devices`, before any
    computation. Returns the process count. A process other than 0 first waits at most
    `timeout_s` for the coordinator, then fails in one line."""
    import jax

    if not timeout_s > 0:
        raise UsageError(f"--coordinator-timeout {timeout_s:g} must be above 0 seconds, e.g. 60")
    settings = _distributed_settings()
    if settings is None and not _cluster_detected():
        return 1
    if settings is not None and settings[1] == 1:
        return 1
    if settings is not None:
        address, count, index = settings
        if index == 0:
            _check_port_free(address)
        else:
            _wait_for(address, timeout_s)
        jax.distributed.initialize(address, count, index, initialization_timeout=int(max(timeout_s, 1)))
    else:
        jax.distributed.initialize(initialization_timeout=int(max(timeout_s, 1)))
    return jax.process_count()


def is_main_process() -> bool:
    """Whether this process writes (process 0 of a multi-process run, or the only one)."""
    import jax

    return jax.process_index() == 0
