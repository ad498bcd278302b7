"""Names that make up a compiled model's interface, shared by the compiler and the runtime."""

TIMESTEPS_INPUT = "timesteps"  # int64 scalar input, default stored as an initializer
PER_STEP_SUFFIX = "_per_step"  # <output>_per_step: [T, B, ...] decoded output after each step
SPIKES_PREFIX = "spikes/"  # spikes/<layer>: [B] spike counts per sample (with --stats)
FOLDED_BATCH = "T*batch"  # the symbolic first dim of every time-folded tensor
SPIKE_TIMES_PREFIX = "spike_times/"  # spike_times/<layer>: [B, ...] absolute TTFS spike times (with --stats)
SYNOPS_PREFIX = "synops/"  # synops/<layer>: [B] synaptic events per sample, spikes × fan-out (TTFS, --stats)
STATE_IN_PREFIX = "state_in/"  # state_in/<node>/<input>: a neuron's initial state (stateful form, runtime.stateful)
STATE_OUT_PREFIX = "state_out/"  # state_out/<node>/<input>: that state after the run's last step
STEP_OFFSET_INPUT = "t0"  # int64 scalar input of the stateful form: the steps already done
