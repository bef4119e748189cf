"""The presets: the lessons `optax-lab run --preset P` runs, as one declarative table (each a
tuple of `Lesson`s of `RunSpec`s), and `get(name)` on it. They run on the default workload,
imdb-mlp (the lesson's MLP on IMDB)."""

from __future__ import annotations

from optax_lab.config import FULL_BATCH
from optax_lab.errors import UsageError, closest
from optax_lab.lessons import LESSON_ADAM, Lesson, RunSpec
from optax_lab.schema import LessonKind

__all__ = ["PRESETS", "get"]

# The lesson's runs. Hyperparameters follow the Keras code of the lesson; where Keras' defaults
# differ from Optax's, the Keras value is spelled out (see optimizers.py for the Keras variants).
_SGD = RunSpec("SGD", "sgd", {"learning_rate": 0.01}, 500)
PRESETS: dict[str, tuple[Lesson, ...]] = {}
PRESETS["gd-vs-sgd"] = (
    Lesson(
        "gd-vs-sgd",
        "GD vs SGD",
        "Full-batch gradient descent takes one step per epoch; mini-batch SGD takes 50. Which learns faster per epoch?",
        (RunSpec("GD", "sgd", {"learning_rate": 0.01}, FULL_BATCH), _SGD),
    ),
)
PRESETS["momentum"] = (
    Lesson(
        "momentum",
        "SGD vs momentum",
        "Does a velocity term (momentum 0.7) speed up SGD at the same learning rate?",
        (_SGD, RunSpec("Momentum", "sgd", {"learning_rate": 0.01, "momentum": 0.7}, 500)),
    ),
)
PRESETS["adaptive"] = (
    Lesson(
        "adaptive",
        "Adaptive learning rates: Adagrad, RMSprop, Adam",
        "Per-parameter step sizes: how do Adagrad (with Keras' inverse-time decay), RMSprop and Adam compare?",
        (
            RunSpec("Adagrad", "keras_adagrad", {"learning_rate": 0.01, "decay": 0.4, "eps": 1e-5}, 500),
            RunSpec(
                "RMSprop", "rmsprop", {"learning_rate": 0.001, "decay": 0.9, "eps": 1e-7, "eps_in_sqrt": False}, 500
            ),
            LESSON_ADAM,
        ),
    ),
)
PRESETS["lesson"] = PRESETS["gd-vs-sgd"] + PRESETS["momentum"] + PRESETS["adaptive"]

# The other three problems of training deep nets. Each varies the model only (data in
# RunSpec.model_changes) under one optimizer; Adam at 1e-3 learns every healthy configuration here.
_ADAM = ("adam", {"learning_rate": 1e-3})
_DEPTHS = (2, 4, 8, 16)
_ACTIVATION_FAMILIES = (
    ("sigmoid", {"activation": "sigmoid"}),
    ("tanh", {"activation": "tanh"}),
    ("relu", {"activation": "relu"}),
    ("sigmoid+residual", {"activation": "sigmoid", "residual": True}),
)
PRESETS["vanishing-gradients"] = (
    Lesson(
        "vanishing-gradients",
        "Vanishing gradients: depth × activation",
        "Backpropagated gradients are products of one factor per layer: do the layers far from the output "
        "still learn in deep sigmoid, tanh and ReLU nets, and do residual connections fix it?",
        tuple(
            RunSpec(f"{family} depth {depth}", *_ADAM, 500, {**model, "widths": (32,) * depth})
            for family, model in _ACTIVATION_FAMILIES
            for depth in _DEPTHS
        ),
        kind=LessonKind.VANISHING_GRADIENTS,
    ),
)
_INITIALISERS = (
    ("zeros", {"kernel_init": "zeros"}),
    ("constant 0.01", {"kernel_init": "constant"}),
    ("normal σ=0.01", {"kernel_init": "normal_0.01"}),
    ("normal σ=1", {"kernel_init": "normal_1"}),
    ("Glorot uniform (Keras)", {"kernel_init": "glorot_uniform"}),
    ("He normal", {"kernel_init": "he_normal"}),
    ("LeCun normal (Flax)", {"kernel_init": "lecun_normal"}),
    ("Kaiming uniform a=√5 (PyTorch)", {"kernel_init": "torch_default", "bias_init": "torch_default"}),
)
PRESETS["initialisation"] = (
    Lesson(
        "initialisation",
        "Initialisation, with Adam",
        "Which starting weights let the lesson's MLP learn, and what happens when all units start equal?",
        tuple(RunSpec(f"{name}, Adam", *_ADAM, 500, model) for name, model in _INITIALISERS),
        kind=LessonKind.INITIALISATION,
    ),
    Lesson(
        "initialisation-sgd",
        "Initialisation, with the lesson's SGD",
        "Plain SGD (0.01) cannot rescale small gradients: how much do the starting weights, and the "
        "frameworks' different defaults, matter there?",
        tuple(RunSpec(f"{name}, SGD", "sgd", {"learning_rate": 0.01}, 500, model) for name, model in _INITIALISERS),
        kind=LessonKind.INITIALISATION,
    ),
)
_BIG = {"widths": (128, 128)}
PRESETS["overfitting"] = (
    Lesson(
        "overfitting",
        "Overfitting and its remedies",
        "A 1000-word, 128×128 MLP trained on 2,000 reviews for 40 epochs memorises them: how wide is the "
        "train/val gap, and how much do L2, weight decay, dropout, a smaller model or stopping early recover?",
        (
            RunSpec("no remedy", *_ADAM, 500, _BIG),
            RunSpec("L2 0.01", *_ADAM, 500, {**_BIG, "l2": 0.01}),
            RunSpec("AdamW, weight decay 5", "adamw", {"learning_rate": 1e-3, "weight_decay": 5.0}, 500, _BIG),
            RunSpec("dropout 0.5", *_ADAM, 500, {**_BIG, "dropout": 0.5}),
            RunSpec("dropout 0.8", *_ADAM, 500, {**_BIG, "dropout": 0.8}),
            RunSpec("smaller model (8)", *_ADAM, 500, {"widths": (8,)}),
        ),
        num_words=1000,
        train_examples=2000,
        epochs=40,
        eval_train=True,
        kind=LessonKind.OVERFITTING,
    ),
)
PRESETS["problems"] = PRESETS["vanishing-gradients"] + PRESETS["initialisation"] + PRESETS["overfitting"]


def get(name: str) -> tuple[Lesson, ...]:
    """The lessons of preset `name`; an unknown name is one line with the closest ones."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}: choose one of {closest(name, list(PRESETS))}")
    return PRESETS[name]
