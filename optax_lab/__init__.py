"""optax_lab: which Optax optimizer trains your model best, how fast, on which hardware.

Data flows one way, one module per stage:
config -> data -> model -> optimizers -> train -> metrics -> report (-> cli).
"""

__version__ = "0.1.0"
