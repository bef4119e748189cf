"""PyTorch's ways of training the lesson's MLP for bench_peers.py: a plain loop, one seed at a
time, and a `torch.func` ensemble, every seed of a run in one vmapped model, eager or compiled.

Every way starts each seed as Keras' `Dense` and optax_lab's MLP do (Glorot-uniform kernels, zero
biases) and uses Keras' Adam eps (1e-7), so that their final val losses can be checked against
optax_lab's within seed noise. Every seed draws its initial weights and its batch order from its
own `torch.Generator`: nothing is seeded globally. Imported only where torch is installed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import torch
import torch._inductor.config
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

# torch.optim's class and settings for each of the lesson's optimizers (the rate is given apart).
OPTIMIZERS = {"adam": (torch.optim.Adam, {"eps": 1e-7}), "sgd": (torch.optim.SGD, {})}


def compile_fixed(function):
    """`torch.compile` for fixed shapes, its kernels built in this process: a pool of compile workers
    would go on starting up beside the timed runs, on the cores they time."""
    torch._inductor.config.compile_threads = 1
    return torch.compile(function, dynamic=False)


def lesson_mlp(num_words: int, seed: int) -> torch.nn.Sequential:
    """num_words → 32 → 32 → 1, ReLU, sigmoid; Glorot-uniform kernels and zero biases drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(num_words, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 1),
        torch.nn.Sigmoid(),
    )
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(layer.weight, generator=generator)
                layer.bias.zero_()
    return model


def make_optimizer(name: str, parameters, rate: float) -> torch.optim.Optimizer:
    optimizer_class, settings = OPTIMIZERS[name]
    return optimizer_class(parameters, lr=rate, **settings)


def train_plain(data: Sequence[torch.Tensor], optimizer: str, rate: float, seed: int, epochs: int, batch: int):
    """One seed, a plain loop; (seconds of its epochs, the last epoch's train loss, val loss and accuracy)."""
    x_train, y_train, x_test, y_test = data
    model = lesson_mlp(x_train.shape[1], seed)
    opt = make_optimizer(optimizer, model.parameters(), rate)
    loss_fn = torch.nn.BCELoss()
    shuffle = torch.Generator().manual_seed(seed)
    logs = {}
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        train_loss = 0.0  # what Keras logs too: the epoch's batch losses weighted by batch size
        for batch_indices in torch.randperm(len(x_train), generator=shuffle).split(batch):
            opt.zero_grad()
            loss = loss_fn(model(x_train[batch_indices]).squeeze(1), y_train[batch_indices])
            loss.backward()
            opt.step()
            train_loss += loss.item() * len(batch_indices)
        model.eval()
        with torch.no_grad():
            predictions = model(x_test).squeeze(1)
            logs = {
                "train_loss": train_loss / len(x_train),
                "val_loss": loss_fn(predictions, y_test).item(),
                "val_acc": ((predictions > 0.5).float() == y_test).float().mean().item(),
            }
    return time.perf_counter() - start, logs


class Ensemble:
    """The seeds of one run as one model: their parameters stacked on a leading seed axis S
    (`stack_module_state`), the MLP applied to each seed's slice by `vmap` of `functional_call`.

    One torch.optim optimizer steps the stacked tensors. Adam and SGD act elementwise and every seed
    steps together (one shared step count), so this is exactly each seed's own Adam or SGD. `reset`
    loads fresh seeds into the same tensors and zeroes the optimizer's state in place, so that a
    compiled step, whose guards hold on to these tensors and this optimizer, is reused, not recompiled.
    """

    def __init__(self, data, optimizer: str, rate: float, seeds: Sequence[int], batch: int, shared: bool, compiled):
        self.x_train, self.y_train, self.x_test, self.y_test = data
        self.batch, self.shared, self.seed_count = batch, shared, len(seeds)
        models = [lesson_mlp(self.x_train.shape[1], seed) for seed in seeds]
        self.params, self.buffers = stack_module_state(models)  # each [S, ...], leaf tensors
        self.skeleton = copy.deepcopy(models[0]).to("meta")  # the architecture without weights
        self.opt = make_optimizer(optimizer, self.params.values(), rate)
        # Per-seed: each seed its own batch [S, B, F]; shared: one batch [B, F] for every seed.
        data_axis = None if shared else 0
        self.gradients = vmap(grad_and_value(self._batch_loss), in_dims=(0, 0, data_axis, data_axis))
        self.step = compile_fixed(self._step) if compiled else self._step
        self.evaluate = compile_fixed(self._evaluate) if compiled else self._evaluate
        self.reset(seeds)

    def _batch_loss(self, params, buffers, x_BF, y_B):
        probabilities_B = functional_call(self.skeleton, (params, buffers), (x_BF,)).squeeze(-1)
        return F.binary_cross_entropy(probabilities_B, y_B)

    def _step(self, params, buffers, indices, x_NF, y_N):
        """One batch for every seed: `indices` are [S, B] (per-seed) or [B] (shared); the seeds' losses [S]."""
        grads, losses_S = self.gradients(params, buffers, x_NF[indices], y_N[indices])
        for name, parameter in params.items():
            parameter.grad = grads[name]
        self.opt.step()
        return losses_S

    def _evaluate(self, params, buffers, x_NF, y_N):
        """Every seed's loss on the whole split, [S]."""
        return vmap(self._batch_loss, in_dims=(0, 0, None, None))(params, buffers, x_NF, y_N)

    def reset(self, seeds: Sequence[int]) -> None:
        """Fresh seeds' initial weights and batch orders (each seed its own generator; shared: the first
        seed's), and a fresh optimizer state (Adam's starts at all zeros: step and both moments; plain SGD
        keeps none)."""
        fresh, _ = stack_module_state([lesson_mlp(self.x_train.shape[1], seed) for seed in seeds])
        with torch.no_grad():
            for name, parameter in self.params.items():
                parameter.copy_(fresh[name])
                parameter.grad = None
            for state in self.opt.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
        self.shuffles = [torch.Generator().manual_seed(seed) for seed in (seeds[:1] if self.shared else seeds)]

    def _epoch_indices(self) -> torch.Tensor:
        """This epoch's batch order: [S, N] per-seed, [N] shared."""
        n = len(self.x_train)
        orders = [torch.randperm(n, generator=shuffle) for shuffle in self.shuffles]
        return orders[0] if self.shared else torch.stack(orders)

    def run(self, epochs: int) -> tuple[float, list[float], list[float]]:
        """Train `epochs` epochs, the loss on the whole test split after each; (seconds, the last epoch's
        train loss per seed, its val loss per seed)."""
        start = time.perf_counter()
        with torch.no_grad():  # gradients come from torch.func, not from autograd's tape
            for _ in range(epochs):
                order = self._epoch_indices()
                train_loss_S = torch.zeros(self.seed_count)
                for indices in order.split(self.batch, dim=-1):
                    losses_S = self.step(self.params, self.buffers, indices, self.x_train, self.y_train)
                    train_loss_S += losses_S * indices.shape[-1]
                val_loss_S = self.evaluate(self.params, self.buffers, self.x_test, self.y_test)
        return time.perf_counter() - start, (train_loss_S / len(self.x_train)).tolist(), val_loss_S.tolist()
