"""What values a hyperparameter may take, and whether the engine can trace it.

Every hyperparameter an entry's constructor accepts has a `Domain`, looked up by name in
`DOMAINS` (optax spells the same thing the same way across its optimizers) unless the entry
declares its own. A real-valued hyperparameter is an input of the compiled program (traced): a
new value reuses the program. Integers, booleans and the rest change the program's structure and
stay Python constants (static): each distinct value is its own program.
"""

from __future__ import annotations

import enum
import math
from typing import Any, NamedTuple

from optax_lab.errors import UsageError

__all__ = ["DOMAINS", "Domain", "Kind"]


class Kind(enum.StrEnum):
    REAL = "real"  # traced: an input of the compiled program
    INTEGER = "integer"  # static: sizes, periods, counts
    BOOLEAN = "boolean"  # static: switches
    OTHER = "other"  # static: dtypes, masks, functions, tuples, strings; passed as given


class Domain(NamedTuple):
    """The values one hyperparameter may take. Real and integer domains are intervals; `optional`
    also allows None (which optax reads as "off", a different program)."""

    kind: Kind
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    choices: tuple[Any, ...] = ()  # for OTHER: the values allowed, when it is a closed set

    def describe(self) -> str:
        if self.kind is Kind.BOOLEAN:
            text = "True or False"
        elif self.kind is Kind.OTHER:
            text = " or ".join(map(repr, self.choices)) if self.choices else "any Python literal"
        else:
            number = "an integer" if self.kind is Kind.INTEGER else "a number"
            opening = "(" if self.low_open or math.isinf(self.low) else "["
            closing = ")" if self.high_open or math.isinf(self.high) else "]"
            text = f"{number} in {opening}{self.low:g}, {self.high:g}{closing}"
        return text + (" or None" if self.optional else "")

    def example(self) -> Any:
        """A value inside the domain, for error messages."""
        if self.kind is Kind.BOOLEAN:
            return True
        if self.kind is Kind.OTHER:
            return self.choices[0] if self.choices else None
        if math.isfinite(self.low) and math.isfinite(self.high):
            middle = (self.low + self.high) / 2
            return round(middle) if self.kind is Kind.INTEGER else middle
        base = self.low if math.isfinite(self.low) else 0.0
        return int(base) + 1 if self.kind is Kind.INTEGER else (base * 10 if base > 0 else base + 0.1)

    def reason(self, value: Any) -> str | None:
        """Why `value` is outside the domain, or None when it is inside. Phrased to follow "is"."""
        if value is None:
            return None if self.optional else "not allowed"
        if self.kind is Kind.BOOLEAN:
            return None if isinstance(value, bool) else "not True or False"
        if self.kind is Kind.OTHER:
            return None if not self.choices or value in self.choices else "not one of the choices"
        if isinstance(value, str):  # the CLI keeps what is no Python literal as text: nan, inf, abc
            number = _text_number(value)
            if number is None or math.isnan(number):
                return "not a number"
            return "not finite" if math.isinf(number) else "text, not a number (write it without quotes)"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "not a number"
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range: no rate or count means that
            return "not finite"
        if not math.isfinite(number):
            return "not finite"
        if self.kind is Kind.INTEGER and not number.is_integer():
            return "not an integer"
        below = value < self.low or (self.low_open and value == self.low)
        above = value > self.high or (self.high_open and value == self.high)
        return "outside the domain" if below or above else None

    def normalise(self, value: Any) -> Any:
        """`value` as optax wants it: a whole float of an integer domain as an int (a sweep's
        values are floats, and optax checks `rank` or `sync_period` with isinstance int)."""
        numeric = isinstance(value, float) and math.isfinite(value) and value.is_integer()
        return int(value) if self.kind is Kind.INTEGER and numeric else value

    def check(self, label: str, value: Any, default: Any = None) -> Any:
        """`value` normalised, or a UsageError in one line: `label`=value, why, the domain and an
        example (`default` when it is inside the domain). `label` is e.g. "adam.b1"."""
        reason = self.reason(value)
        if reason is None:
            return self.normalise(value)
        example = default if default is not None and self.reason(default) is None else self.example()
        raise UsageError(
            f"{label}={value!r} is {reason}: {label.rpartition('.')[2]} takes {self.describe()}, "
            f"e.g. {label}={example!r}"
        )

    def record(self) -> dict[str, Any]:
        """The domain for JSON readers (`optax-lab list --json`): infinite bounds are null."""
        low, high = (x if math.isfinite(x) else None for x in (self.low, self.high))
        return {
            "kind": self.kind.value,
            "text": self.describe(),
            "low": low,
            "high": high,
            "low_open": self.low_open,
            "high_open": self.high_open,
            "optional": self.optional,
            "choices": [c if isinstance(c, (str, int, float, bool)) else repr(c) for c in self.choices],
        }


def _text_number(text: str) -> float | None:
    """The float a text spells (nan and inf included), or None."""
    try:
        return float(text)
    except ValueError:
        return None


_POSITIVE = Domain(Kind.REAL, 0.0, low_open=True)
_NON_NEGATIVE = Domain(Kind.REAL, 0.0)
_DECAY = Domain(Kind.REAL, 0.0, 1.0, high_open=True)  # an exponential moving average's factor
_ANY_REAL = Domain(Kind.REAL)
_COUNT = Domain(Kind.INTEGER, 1.0)
_NON_NEGATIVE_INT = Domain(Kind.INTEGER, 0.0)
_SWITCH = Domain(Kind.BOOLEAN)
_OBJECT = Domain(Kind.OTHER, optional=True)

DOMAINS: dict[str, Domain] = {
    # step sizes and scales
    **dict.fromkeys(
        (
            "learning_rate",
            "adam_learning_rate",
            "max_learning_rate",
            "estim_lr0",
            "estim_lr_coef",
            "s_init",
            "scaling",
            "scale",
            "trust_coefficient",
            "l2_norm_clip",
            "max_step_size",
            "min_step_size",
            "clip_threshold",
        ),
        _POSITIVE,
    ),
    "clipping_threshold": _POSITIVE._replace(optional=True),
    "init_estim_sq_dist": _POSITIVE._replace(optional=True),
    # moving-average factors
    **dict.fromkeys(("b1", "b2", "b3", "adam_b1", "adam_b2", "beta", "decay_rate"), _DECAY),
    "momentum": _DECAY._replace(optional=True),
    "beta3": _DECAY._replace(optional=True),
    "decay": _DECAY,  # rmsprop's; keras_adagrad's inverse-time decay declares its own
    "rho": _DECAY,  # adadelta's; sam_sgd's ascent radius declares its own
    # non-negative amounts
    **dict.fromkeys(
        (
            "eps",
            "eps_root",
            "adam_eps_root",
            "adam_weight_decay",
            "min_norm",
            "initial_accumulator_value",
            "initial_scale",
            "noise_multiplier",
            "rtol",
            "alpha",
            "weight_lr_power",
            "threshold",
            "eta",
            "gamma",
        ),
        _NON_NEGATIVE,
    ),
    **dict.fromkeys(
        ("weight_decay", "weight_decay_rate", "optimism", "consistent_rms"), _NON_NEGATIVE._replace(optional=True)
    ),
    "eta_minus": Domain(Kind.REAL, 0.0, 1.0, low_open=True, high_open=True),
    "eta_plus": Domain(Kind.REAL, 1.0, low_open=True),
    "factor": Domain(Kind.REAL, 0.0, 1.0, low_open=True, high_open=True),
    "min_scale": Domain(Kind.REAL, 0.0, 1.0),
    "slow_step_size": Domain(Kind.REAL, 0.0, 1.0, low_open=True),
    "f_min": _ANY_REAL,
    "lower_bound": _ANY_REAL,
    # structure: sizes, periods, counts
    **dict.fromkeys(
        ("accumulation_size", "memory_size", "num_betas", "rank", "sync_period", "update_interval", "update_proj_gap"),
        _COUNT,
    ),
    **dict.fromkeys(
        ("patience", "min_dim_size_to_factor", "ns_steps", "decay_offset", "print_win_rate_every_n_steps"),
        _NON_NEGATIVE_INT,
    ),
    "warmup_steps": _NON_NEGATIVE_INT._replace(optional=True),
    # switches
    **dict.fromkeys(
        (
            "adapt_lower_bound",
            "adaptive",
            "bias_correction",
            "bias_correction_mu",
            "bias_correction_nu",
            "centered",
            "eps_in_sqrt",
            "factored",
            "multiply_by_parameter_scale",
            "nesterov",
            "safeguard_warmup",
            "scale_init_precond",
            "trust_ratio_mask",
            "use_clipping",
            "verbose",
        ),
        _SWITCH,
    ),
    # dtypes, masks, functions, tuples: passed through as given
    **dict.fromkeys(
        (
            "accumulator_dtype",
            "mu_dtype",
            "dtype_momentum",
            "state_dtype",
            "mask",
            "weight_decay_mask",
            "base_optimizer",
            "betas",
            "clip_value_fn",
            "hessian_diagonal_fn",
            "init_step",
            "linesearch",
            "muon_weight_dimension_numbers",
            "weight_dimension_numbers",
            "ns_coeffs",
        ),
        _OBJECT,
    ),
    "variant": Domain(Kind.OTHER, choices=("sps", "sps+")),
    "preconditioning": Domain(Kind.OTHER, choices=("frobenius", "spectral", "aol", "schatten")),
}
