"""Compile options: one dataclass that the CLI fills and the passes read."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import SnnError

NORM_MODES = ("max", "99.9", "99.99")
RESET_MODES = ("soft", "hard")
NEURON_TYPES = ("auto", "if", "signgd", "ttfs")
TTFS_MODELS = ("b1", "a")
SCHEDULES = ("exponential", "exp_inverse", "inverse", "constant")
CODECS = ("exact", "float", "spike")


@dataclass
class CompileOptions:
    """Everything that changes what `compile` writes. Recorded in the output's metadata."""

    timesteps: int = 32
    norm: str = "99.9"  # "max", a percentile such as "99.9", or a fraction of max such as "0.8"
    per_channel: bool = False
    reset: str = "soft"
    v_init: float = 0.5
    neuron: str = "auto"  # IF neurons for ReLU nets, signGD where the graph needs it
    schedule: str = "exponential"  # signGD step sizes (exp_inverse adds a tail/t floor)
    eta0: float = 0.3  # signGD first step size (spec 0.15)
    gamma: float = 0.9  # signGD decay of the exponential head (spec 0.95)
    tail: float = 0.25  # signGD exp_inverse floor: η_t = max(eta0·gamma^(t-1), tail/t)
    signgd_range: float = 2.0  # signGD neurons hold activations scaled to [-range, range] (spec: 1, ReLU only)
    codec: str = "exact"  # signGD input encoder (spec §3 float/spike, or exact: no gain error)
    ttfs_model: str = "b1"  # TTFS neuron model: b1 (closed form, relative times) or a (arXiv 2212.12522)
    zeta: float = 0.5  # TTFS window margin: B_n = (1 + zeta)·X_n
    input_range: tuple[float, float] | None = None  # TTFS input range [p, q]; None: from the calibration data
    stats: bool = False
    calib_batch_size: int = 256
    calib_batches: int | None = None
    dump_after: list[str] = field(default_factory=list)

    def validate(self) -> "CompileOptions":
        """Raise SnnError for an option out of its range; return self."""
        if self.timesteps < 1:
            raise SnnError(f"--timesteps must be at least 1, got {self.timesteps}")
        if self.reset not in RESET_MODES:
            raise SnnError(f"--reset must be one of {', '.join(RESET_MODES)}, got '{self.reset}'")
        if self.neuron not in NEURON_TYPES:
            raise SnnError(f"--neuron must be one of {', '.join(NEURON_TYPES)}, got '{self.neuron}'")
        if self.schedule not in SCHEDULES:
            raise SnnError(f"--schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
        if not (0.0 < self.eta0 and 0.0 < self.gamma <= 1.0 and self.signgd_range > 0.0):
            raise SnnError(f"--eta0 and --signgd-range must be positive and --gamma in (0, 1]; got "
                           f"{self.eta0}, {self.signgd_range}, {self.gamma}")
        if self.codec not in CODECS:
            raise SnnError(f"--codec must be one of {', '.join(CODECS)}, got '{self.codec}'")
        if self.ttfs_model not in TTFS_MODELS:
            raise SnnError(f"--ttfs-model must be one of {', '.join(TTFS_MODELS)}, got '{self.ttfs_model}'")
        if not self.zeta > -1.0:
            raise SnnError(f"--zeta must be greater than -1 (windows B_n = (1 + zeta)·X_n), got {self.zeta}")
        if self.input_range is not None and not float(self.input_range[0]) < float(self.input_range[1]):
            raise SnnError(f"--input-range P Q needs P < Q, got {list(self.input_range)}")
        if not 0.0 <= self.v_init < 1.0:
            raise SnnError(f"--v-init must be in [0, 1), got {self.v_init}")
        norm_statistic(self.norm)
        return self

    def as_metadata(self) -> dict[str, Any]:
        """The options as a JSON-serialisable dict."""
        data = asdict(self)
        data.pop("dump_after")
        return data


def norm_statistic(norm: str) -> tuple[str, float]:
    """Parse --norm into ("max", 1.0), ("percentile", p) or ("fraction", f) of max.

    "max" and "99.9"/"99.99" (or any number in (1, 100)) are percentiles of the activations;
    a number in (0, 1] is a fixed fraction of the max, as in spikingjelly's float modes.
    """
    if norm == "max":
        return "max", 1.0
    try:
        value = float(norm.rstrip("%"))
    except ValueError:
        raise SnnError(f"--norm must be max, a percentile such as 99.9, or a fraction in (0, 1]; got '{norm}'") from None
    if 0.0 < value <= 1.0:
        return "fraction", value
    if 1.0 < value < 100.0:
        return "percentile", value
    if value == 100.0:
        return "max", 1.0
    raise SnnError(f"--norm must be max, a percentile such as 99.9, or a fraction in (0, 1]; got '{norm}'")
