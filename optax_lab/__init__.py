"""optax_lab: which Optax optimizer trains your model best, how fast, on which hardware.

Data flows one way, one stage per module or package:
config -> planning (lessons, jobs, planners) -> runner (engine, run_store) -> metrics -> report,
with the command line on top; docs/architecture.md has the whole house.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
