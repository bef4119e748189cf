"""optax_lab: which Optax optimizer trains your model best, how fast, on which hardware.

Data flows one way, one module per stage:
config -> data -> model -> optimizers -> program -> train -> metrics -> experiment -> report (-> cli);
the README's layout diagram is the full picture.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
