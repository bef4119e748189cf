"""optax_lab: which Optax optimizer trains your model best, how fast, on which hardware.

Data flows one way, one stage per module or package:
config -> planning (lessons, jobs, planners) -> runner (engine, run_store) -> metrics -> report,
with the command line and the Python API (`run`, `tune`, `load`, `Results`, from `optax_lab.api`)
on top; docs/architecture.md has the whole house.
"""

__version__ = "0.1.0"
__all__ = ["Domain", "Kind", "Results", "__version__", "declare", "load", "run", "tune"]

_API = ("Results", "load", "run", "tune")
_OPTIMIZERS = ("Domain", "Kind", "declare")  # what an optimizer of one's own may declare


def __getattr__(name: str):
    # Imported on first use, so that `import optax_lab` (and every stage below it) stays free of JAX.
    if name in _API:
        from optax_lab import api

        return getattr(api, name)
    if name in _OPTIMIZERS:
        from optax_lab import optimizers

        return getattr(optimizers, name)
    raise AttributeError(f"module 'optax_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API, *_OPTIMIZERS})
