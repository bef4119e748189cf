"""DeepOBS's image problems (Schneider, Balles and Hennig, ICLR 2019) on TensorFlow Datasets, and
`tfds:NAME[:NET]`, any TFDS image-classification dataset through one of their nets.

Each problem is defined from fsschneider/DeepOBS (read for the definitions, not copied):

- nets: `_deepobs_nets` (deepobs/tensorflow/testproblems/_logreg.py, _mlp.py, _2c2d.py, _3c3d.py,
  cifar100_allcnnc.py; deepobs/pytorch/testproblems/testproblems_modules.py);
- batch sizes and epochs: deepobs/config.py, DEFAULT_TEST_PROBLEMS_SETTINGS (mnist_logreg 128 x 50,
  mnist_mlp, fmnist_2c2d and cifar10_3c3d 128 x 100, cifar100_allcnnc 256 x 350);
- weight decay on every kernel, not the biases: cifar10_3c3d.py's default 0.002 and
  cifar100_allcnnc.py's 5e-4, added to the loss as TensorFlow's l2 regulariser does, wd * sum
  ||w||^2 / 2 (tf.nn.l2_loss; _3c3d.py's Keras l2(0.5 * wd) is the same), so `Workload.l2` is
  wd / 2; the other three have none;
- data: deepobs/tensorflow/datasets/mnist.py (pixels / 255) and cifar10.py (per-image
  standardisation, `_deepobs_nets.standardized`), the same datasets from TFDS (mnist,
  fashion_mnist, cifar10, cifar100 with its 100 fine labels), trained on the 60,000 (50,000)
  training images and validated on the 10,000 test images, as DeepOBS 1.1's baselines were;
- targets and per-optimizer rates: DeepOBS's published baselines (each target's source).

Left out, because the engine cannot express it: DeepOBS's CIFAR data augmentation on the
training images (random crops of the image padded to 36x36, horizontal flips, brightness,
saturation and contrast), which needs fresh randomness in the data path at every step, where the
engine gathers fixed arrays. It regularises, so these runs overfit sooner and peak lower than
DeepOBS's on cifar10-3c3d and cifar100-allcnnc.

The data of every one of these is downloaded on first use into the TFDS data directory
(`optax_lab.data.tfds`), so `--workloads all` leaves them out: name them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from types import MappingProxyType

import flax.linen as nn

from optax_lab.data import Dataset, tfds
from optax_lab.errors import UsageError
from optax_lab.workloads._deepobs_nets import MLP, AllCNNC, LogReg, ThreeC3D, TwoC2D
from optax_lab.workloads._images import ACCURACY, balanced_subset, softmax_cross_entropy
from optax_lab.workloads._workload import DataRequest, Target, Workload

__all__ = ["DEEPOBS_WORKLOADS", "NETS", "TFDS_PREFIX", "Net", "tfds_images", "tfds_workload"]

TFDS_PREFIX = "tfds:"


@dataclasses.dataclass(frozen=True)
class Net:
    """A DeepOBS net with its problem's training settings: module(classes), its description,
    epochs, batch size, weight decay as `Workload.l2`, the evaluation chunk, and whether it draws
    dropout while training."""

    module: Callable[[int], nn.Module]
    text: str  # {classes} is filled in
    epochs: int
    batch: int
    l2: float = 0.0
    eval_batch: int | None = None
    dropout: bool = False


NETS: MappingProxyType[str, Net] = MappingProxyType(
    {
        "logreg": Net(LogReg, "dense {classes} on pixels / 255, from zeros", 50, 128, eval_batch=10_000),
        "mlp": Net(MLP, "dense 1000 -> 500 -> 100 -> {classes}, ReLU, on pixels / 255", 100, 128, eval_batch=10_000),
        "2c2d": Net(
            TwoC2D,
            "conv 5x5 32 -> max pool 2 -> conv 5x5 64 -> max pool 2 -> dense 1024 -> {classes}, ReLU, on pixels / 255",
            100,
            128,
            eval_batch=1000,
        ),
        "3c3d": Net(
            ThreeC3D,
            "conv 5x5 64 -> pool 3/2 -> conv 3x3 96 -> pool 3/2 -> conv 3x3 128 -> pool 3/2 -> dense 512 -> 256 -> "
            "{classes}, ReLU, on standardised images, weight decay 0.002",
            100,
            128,
            l2=0.002 / 2,
            eval_batch=1000,
        ),
        "allcnnc": Net(
            AllCNNC,
            "All-CNN-C: conv 3x3 96, 96, 96/2, 192, 192, 192/2, conv 3x3 192, 1x1 192, 1x1 {classes}, ReLU, mean "
            "over the image, on standardised images, dropout 0.2 on the input and 0.5 after each /2, weight decay 5e-4",
            350,
            256,
            l2=5e-4 / 2,
            eval_batch=250,
            dropout=True,
        ),
    }
)


def tfds_images(dataset: str) -> Callable[[DataRequest], tuple[Dataset, None]]:
    """A workload's data: the TFDS dataset's train split and its test split (read once a process),
    uint8 images and int32 labels; --train-examples takes a class-balanced subset (--dataset,
    --imdb-archive and --num-words are the IMDB workloads' and do not apply)."""

    def data(request: DataRequest) -> tuple[Dataset, None]:
        arrays = tfds.images(dataset)
        images = Dataset(dataset, arrays.source, *arrays[:4], num_words=0)
        return balanced_subset(images, request.train_examples, request.seed), None

    return data


def _workload(name: str, description: str, dataset: str, net: str, classes: int, target: Target, **extra) -> Workload:
    spec = NETS[net]
    return Workload(
        name,
        description,
        tfds_images(dataset),
        spec.module(classes),
        softmax_cross_entropy,
        target,
        metrics=ACCURACY,
        model_text=spec.text.format(classes=classes),
        epochs=spec.epochs,
        batches=(spec.batch,),
        eval_batch=spec.eval_batch,
        l2=spec.l2,
        dropout=spec.dropout,
        **extra,
    )


_REPO = "fsschneider/DeepOBS"


def _published(problem: str, accuracy: float, differences: str) -> str:
    return (
        f"DeepOBS's published convergence performance for {problem}, {accuracy} test accuracy "
        f"(baselines_deepobs/convergence_performance.json in {_REPO}, which its analyzer reads: the accuracy its "
        f"speed measure counts epochs to), rounded down; not measured here. {differences}"
    )


def _baseline_rates(problem: str, adam: float, sgd: float, momentum: float) -> dict:
    """Each DeepOBS baseline optimizer's tuned learning rate: the setting it reran on 10 seeds."""
    return {
        "optimizer_defaults": {
            "adam": {"learning_rate": adam},
            "sgd": {"learning_rate": sgd},
            "momentum": {"learning_rate": momentum, "momentum": 0.99},
        },
        "defaults_source": f"DeepOBS's tuned baselines for {problem}: each optimizer's learning rate that it reran on "
        f"10 seeds (baselines/{problem}/AdamOptimizer, GradientDescentOptimizer and MomentumOptimizer with momentum "
        f"0.99, in {_REPO}), to 4 digits",
    }


_UNPUBLISHED = (
    "to be measured: DeepOBS publishes no baseline for {problem} (its baselines, baselines/ and "
    "baselines_deepobs/ in " + _REPO + ", cover the small and large benchmark sets only); {value} is a placeholder"
)

DEEPOBS_WORKLOADS: tuple[Workload, ...] = (
    _workload(
        "mnist-logreg",
        "DeepOBS mnist_logreg: multinomial logistic regression on MNIST (TFDS mnist, 60,000 / 10,000)",
        "mnist",
        "logreg",
        10,
        Target("val_acc", 0.92, "max", _UNPUBLISHED.format(problem="mnist_logreg", value=0.92)),
        reference="adam",
    ),
    _workload(
        "mnist-mlp",
        "DeepOBS mnist_mlp: a 4-layer MLP on MNIST (TFDS mnist, 60,000 / 10,000)",
        "mnist",
        "mlp",
        10,
        Target("val_acc", 0.98, "max", _UNPUBLISHED.format(problem="mnist_mlp", value=0.98)),
        reference="adam",
    ),
    _workload(
        "fmnist-2c2d",
        "DeepOBS fmnist_2c2d: two conv and two dense layers on Fashion-MNIST (TFDS fashion_mnist, 60,000 / 10,000)",
        "fashion_mnist",
        "2c2d",
        10,
        Target("val_acc", 0.919, "max", _published("fmnist_2c2d", 0.9198, "Same data, net and evaluation.")),
        reference="adam",
        **_baseline_rates("fmnist_2c2d", adam=2.512e-4, sgd=0.1585, momentum=2.512e-3),
    ),
    _workload(
        "cifar10-3c3d",
        "DeepOBS cifar10_3c3d: three conv and three dense layers on CIFAR-10 (TFDS cifar10, 50,000 / 10,000), "
        "without its data augmentation",
        "cifar10",
        "3c3d",
        10,
        Target(
            "val_acc",
            0.828,
            "max",
            _published("cifar10_3c3d", 0.8283, "DeepOBS trains on augmented images, these runs on the images alone."),
        ),
        reference="adam",
        **_baseline_rates("cifar10_3c3d", adam=3.981e-4, sgd=0.06310, momentum=3.981e-4),
    ),
    _workload(
        "cifar100-allcnnc",
        "DeepOBS cifar100_allcnnc: All-CNN-C on CIFAR-100 (TFDS cifar100, 50,000 / 10,000), without its data "
        "augmentation",
        "cifar100",
        "allcnnc",
        100,
        Target(
            "val_acc",
            0.525,
            "max",
            _published(
                "cifar100_allcnnc", 0.5256, "DeepOBS trains on augmented images, these runs on the images alone."
            ),
        ),
        reference="adam",
        **_baseline_rates("cifar100_allcnnc", adam=1e-3, sgd=0.1585, momentum=3.981e-3),
    ),
)


def _net_for(shape: tuple[int, int, int]) -> str:
    """The DeepOBS net of a dataset's images: MNIST's 2c2d for 28x28, CIFAR's 3c3d for 32x32,
    else All-CNN-C, whose mean over the image takes any size."""
    return {(28, 28): "2c2d", (32, 32): "3c3d"}.get(shape[:2], "allcnnc")


def tfds_workload(reference: str) -> Workload:
    """`tfds:NAME` (the net picked by the images' shape, `_net_for`) or `tfds:NAME:NET` (NET one
    of NETS): the TFDS image-classification dataset NAME through a DeepOBS net with its
    problem's epochs, batch size and weight decay. One workload a pair, however it is named."""
    name, _, net = reference.removeprefix(TFDS_PREFIX).partition(":")
    if not name:
        raise UsageError(f"workload {reference!r}: name a TFDS dataset, e.g. tfds:mnist or tfds:cifar10:3c3d")
    if net and net not in NETS:
        raise UsageError(f"workload {reference}: unknown net {net!r}: choose one of {', '.join(NETS)}")
    return _tfds_workload(name, net or _net_for(tfds.image_info(name).shape))


@functools.cache
def _tfds_workload(name: str, net: str) -> Workload:
    info = tfds.image_info(name)
    height, width, _ = info.shape
    how = f"the one for {height}x{width} images" if net == _net_for(info.shape) else "named"
    return _workload(
        f"tfds-{name.replace('/', '-')}-{net}",
        f"TFDS {info.full_name} ({'x'.join(map(str, info.shape))}, {info.classes} classes) through DeepOBS's {net} "
        f"net ({how}; {TFDS_PREFIX}{name}:{net})",
        name,
        net,
        info.classes,
        Target(
            "val_acc",
            1.0,
            "max",
            "none: a dataset of your choosing has no reference run, so no run reaches this placeholder; set a "
            "target in a workload of your own (optax_lab.workloads.Workload)",
        ),
        reference="adam",
    )
