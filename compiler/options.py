"""Compile options: one dataclass that the CLI fills and the passes read."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .crossbar import check_constraint
from .errors import SnnError

NORM_MODES = ("max", "99.9", "99.99")
RESET_MODES = ("soft", "hard")
NEURON_TYPES = ("auto", "if", "signgd", "ttfs")
TTFS_MODELS = ("b1", "a")
SCHEDULES = ("exponential", "exp_inverse", "inverse", "constant")
CODECS = ("exact", "float", "spike")
ENCODINGS = ("analog", "poisson", "signgd")
#: the largest T a model or run accepts (the Scan trip counts and step indices are int64, but a
#: run's memory grows with T: beyond 2^31 steps no budget holds even one sample's read-out)
MAX_TIMESTEPS = 2 ** 31 - 1
#: the neuron types each input encoding works with
ENCODING_NEURONS = {"analog": ("auto", "if", "signgd", "ttfs"), "poisson": ("auto", "if"), "signgd": ("auto", "signgd")}


@dataclass
class CompileOptions:
    """Everything that changes what `compile` writes. Recorded in the output's metadata."""

    timesteps: int = 32
    norm: str = "99.9"  # "max", a percentile such as "99.9", or a fraction of max such as "0.8"
    per_channel: bool = False
    reset: str = "soft"
    v_init: float = 0.5
    encoding: str = "analog"  # input: the analog value (each neuron type's own codec), poisson (IF) or signgd
    # (the signGD spec's spike encoder, i.e. --codec spike)
    max_rate: float = 1.0  # poisson: spike probability per step of an input of 1
    seed: int = 0  # poisson: the seed of the counter-based generator, in [0, 2^32)
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
    weight_levels: int | None = None  # crossbar weights: N levels per sign (None: weights untouched)
    on_off_ratio: float = 10.0  # crossbar ON/OFF ratio R: smallest non-zero magnitude ≥ max / R
    per_channel_weights: bool = False  # crossbar max magnitude per output channel instead of per layer
    calib_batch_size: int = 256
    calib_batches: int | None = None
    dump_after: list[str] = field(default_factory=list)

    def validate(self) -> "CompileOptions":
        """Raise SnnError for an option out of its range; return self."""
        if isinstance(self.timesteps, bool) or not isinstance(self.timesteps, int) \
                or not 1 <= self.timesteps <= MAX_TIMESTEPS:
            raise SnnError(f"--timesteps must be an integer in [1, {MAX_TIMESTEPS}], got {self.timesteps!r}")
        floats = {"--eta0": self.eta0, "--gamma": self.gamma, "--tail": self.tail, "--signgd-range": self.signgd_range,
                  "--zeta": self.zeta, "--v-init": self.v_init, "--max-rate": self.max_rate,
                  "--on-off-ratio": self.on_off_ratio, **dict(zip(("--input-range P", "--input-range Q"),
                                                                 self.input_range or ()))}
        for flag, value in floats.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SnnError(f"{flag} must be a finite number, got {value!r}")
        if self.calib_batches is not None and self.calib_batches < 1:
            raise SnnError(f"--calib-batches must be at least 1, got {self.calib_batches}")
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
        if self.weight_levels is not None:
            check_constraint(self.weight_levels, self.on_off_ratio)
        if self.encoding not in ENCODINGS:
            raise SnnError(f"--encoding must be one of {', '.join(ENCODINGS)}, got '{self.encoding}'")
        if self.neuron not in ENCODING_NEURONS[self.encoding]:
            raise SnnError(f"--encoding {self.encoding} works with --neuron {'|'.join(ENCODING_NEURONS[self.encoding])}, "
                           f"got --neuron {self.neuron}")
        if not (self.max_rate > 0.0 and 0 <= self.seed < 2 ** 32):
            raise SnnError(f"--max-rate must be positive and --seed in [0, 2^32); got {self.max_rate}, {self.seed}")
        norm_statistic(self.norm)
        if spikenorm_statistic(self.norm) is not None and (self.per_channel or self.neuron not in ("auto", "if")):
            raise SnnError(f"--norm {self.norm} balances IF layers, one threshold each: it needs IF neurons "
                           "and no --per-channel")
        return self

    @property
    def signgd_codec(self) -> str:
        """The signGD input codec: spike under --encoding signgd, else --codec."""
        return "spike" if self.encoding == "signgd" else self.codec

    def as_metadata(self) -> dict[str, Any]:
        """The options as a JSON-serialisable dict."""
        data = asdict(self)
        data.pop("dump_after")
        return data


SPIKENORM = "spikenorm"


def spikenorm_statistic(norm: str) -> tuple[str, float] | None:
    """For --norm spikenorm (the max) or spikenorm:P (the P-th percentile) of the input currents
    under spiking input (passes/spikenorm.py): the statistic, as norm_statistic gives it; else None."""
    if norm == SPIKENORM:
        return "max", 1.0
    if norm.startswith(SPIKENORM + ":"):
        kind, value = norm_statistic(norm[len(SPIKENORM) + 1:])
        if kind == "fraction":
            raise SnnError(f"--norm {norm}: spikenorm takes the max or a percentile in (1, 100]")
        return kind, value
    return None


def norm_statistic(norm: str) -> tuple[str, float]:
    """Parse --norm into ("max", 1.0), ("percentile", p) or ("fraction", f) of max.

    "max" and "99.9"/"99.99" (or any number in (1, 100)) are percentiles of the activations;
    a number in (0, 1] is a fixed fraction of the max, as in spikingjelly's float modes.
    "spikenorm[:P]" takes the same statistic of the spiking currents (spikenorm_statistic).
    """
    spiking = spikenorm_statistic(norm)
    if spiking is not None:
        return spiking
    if norm == "max":
        return "max", 1.0
    try:
        value = float(norm.rstrip("%"))
    except ValueError:
        raise SnnError(f"--norm must be max, a percentile such as 99.9, a fraction in (0, 1], or spikenorm[:P]; "
                       f"got '{norm}'") from None
    if 0.0 < value <= 1.0:
        return "fraction", value
    if 1.0 < value < 100.0:
        return "percentile", value
    if value == 100.0:
        return "max", 1.0
    raise SnnError(f"--norm must be max, a percentile such as 99.9, or a fraction in (0, 1]; got '{norm}'")
