"""Names that make up a compiled model's interface, shared by the compiler and the runtime."""

TIMESTEPS_INPUT = "timesteps"  # int64 scalar input, default stored as an initializer
PER_STEP_SUFFIX = "_per_step"  # <output>_per_step: [T, B, ...] decoded output after each step
SPIKES_PREFIX = "spikes/"  # spikes/<layer>: [B] spike counts per sample (with --stats)
FOLDED_BATCH = "T*batch"  # the symbolic first dim of a time-folded tensor whose axis 0 is the batch
FOLDED_PREFIX = "T*"  # starts every time-folded first dim: T*batch, or T*<s> where axis 0 was s (B·windows)
SPIKE_TIMES_PREFIX = "spike_times/"  # spike_times/<layer>: [B, ...] absolute TTFS spike times (with --stats)
SYNOPS_PREFIX = "synops/"  # synops/<layer>: [B] synaptic events per sample, spikes × fan-out (TTFS, --stats)
STATE_IN_PREFIX = "state_in/"  # state_in/<node>/<input>: a neuron's initial state (stateful form, runtime.stateful)
STATE_OUT_PREFIX = "state_out/"  # state_out/<node>/<input>: that state after the run's last step
STEP_OFFSET_INPUT = "t0"  # int64 scalar input of the stateful form: the steps already done


def folded_dim(first: object, batch: str) -> str | None:
    """The first dim of a tensor whose axis 0 (`first`) gets time folded into it: FOLDED_BATCH for
    the batch symbol `batch`, T*<s> for another symbol s (a batch merged with other positions, as
    Swin's windows, [B·k, ...]: a name of its own, since onnxruntime takes equal names for equal
    sizes), and unknown (None) for a fixed or unknown size."""
    if first == batch:
        return FOLDED_BATCH
    return f"{FOLDED_PREFIX}{first}" if isinstance(first, str) and first else None


def is_folded(dim_param: str) -> bool:
    """`dim_param` is the first dim of a time-folded tensor (folded_dim)."""
    return dim_param.startswith(FOLDED_PREFIX)
