"""Names that make up a compiled model's interface, shared by the compiler and the runtime."""

TIMESTEPS_INPUT = "timesteps"  # int64 scalar input, default stored as an initializer
PER_STEP_SUFFIX = "_per_step"  # <output>_per_step: [T, B, ...] decoded output after each step
SPIKES_PREFIX = "spikes/"  # spikes/<layer>: [B] spike counts per sample (with --stats)
FOLDED_BATCH = "T*batch"  # the symbolic first dim of every time-folded tensor
SPIKE_TIMES_PREFIX = "spike_times/"  # spike_times/<layer>: [B, ...] absolute TTFS spike times (with --stats)
SYNOPS_PREFIX = "synops/"  # synops/<layer>: [B] synaptic events per sample, spikes × fan-out (TTFS, --stats)
