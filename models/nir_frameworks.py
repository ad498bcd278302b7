"""NIR graphs run by snnTorch and sinabs through their own importers, as each is meant to be run, for
the NIR tests and benchmark: the same input x at every step for T steps; the output's running mean
after each step (rate decoding) and each spiking layer's spike count per sample.

- snnTorch (`snntorch.import_nir.import_from_nir`, a nirtorch GraphModule of stateful neurons):
  one call per step. Its Flatten flattens the batch axis too (NIR's dims leave the batch out), so
  it runs one sample at a time, each from fresh neurons.
- Norse (`norse.torch.from_nir`, nirtorch's GraphExecutor of stateful cells): one call per step
  with the state it returned; its Flatten flattens the batch too, so one sample at a time.
- sinabs (`sinabs.from_nir(graph, batch_size=B)`, layers that take the whole [B*T, ...] sequence,
  sample-major): one call. `topological=True` runs sinabs's modules ourselves in a topological
  order of the graph, for nets with residual joins that its own executor (depth-first) runs
  before all their inputs exist.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class FrameworkRun:
    """`per_step` [T, B, ...]: the output's mean over steps 1..t; `spikes`: NIR neuron node -> [B] counts."""

    per_step: np.ndarray
    spikes: dict[str, np.ndarray]

    @property
    def logits(self) -> np.ndarray:
        return self.per_step[-1]


def running_mean(outputs: np.ndarray) -> np.ndarray:
    """[T, B, ...] outputs per step -> their mean over steps 1..t, in float64."""
    steps = np.arange(1, len(outputs) + 1).reshape((-1,) + (1,) * (outputs.ndim - 1))
    return np.cumsum(np.asarray(outputs, dtype=np.float64), axis=0) / steps


def snntorch_run(graph: Any, x: np.ndarray, timesteps: int) -> FrameworkRun:
    """`graph` imported by snnTorch, run on `x` [B, ...] one sample at a time for `timesteps` steps."""
    import snntorch as snn
    import torch
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # it prints and warns
        warnings.simplefilter("ignore")
        net = import_from_nir(graph)
    neurons = {name: m for name, m in net.named_modules() if isinstance(m, (snn.Leaky, snn.Synaptic))}
    step_spikes: dict[str, float] = {}
    for name, module in neurons.items():
        module.register_forward_hook(lambda _m, _i, out, name=name: step_spikes.__setitem__(name, float(out.sum())))
    outputs: list[np.ndarray] = []
    spikes = {name: np.zeros(len(x)) for name in neurons}
    with torch.no_grad():
        for b, sample in enumerate(np.asarray(x, dtype=np.float32)):
            for module in neurons.values():  # fresh: init_hidden neurons restart from zeros of a new shape
                module.mem = torch.zeros(0)
                if isinstance(module, snn.Synaptic):
                    module.syn = torch.zeros(0)
            steps = []
            for _ in range(timesteps):
                out, _state = net(torch.from_numpy(sample))
                steps.append(out.numpy().astype(np.float64))
                for name in neurons:
                    spikes[name][b] += step_spikes[name]
            outputs.append(np.stack(steps))
    return FrameworkRun(running_mean(np.stack(outputs, axis=1)), spikes)


def norse_run(graph: Any, x: np.ndarray, timesteps: int) -> FrameworkRun:
    """`graph` imported by Norse, run on `x` [B, ...] one sample at a time for `timesteps` steps,
    each from fresh cells (its executor's state starts empty)."""
    import torch
    from norse.torch import from_nir
    from norse.torch.module.iaf import IAFCell

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # it warns
        warnings.simplefilter("ignore")
        net = from_nir(graph)
    neurons = {name: m for name, m in net.named_modules() if isinstance(m, IAFCell)}
    step_spikes: dict[str, float] = {}
    for name, module in neurons.items():
        module.register_forward_hook(lambda _m, _i, out, name=name: step_spikes.__setitem__(name, float(out[0].sum())))
    outputs: list[np.ndarray] = []
    spikes = {name: np.zeros(len(x)) for name in neurons}
    with torch.no_grad():
        for b, sample in enumerate(np.asarray(x, dtype=np.float32)):
            state, steps = None, []
            for _ in range(timesteps):
                out, state = net(torch.from_numpy(sample), state)
                steps.append(out.numpy().astype(np.float64))
                for name in neurons:
                    spikes[name][b] += step_spikes[name]
            outputs.append(np.stack(steps))
    return FrameworkRun(running_mean(np.stack(outputs, axis=1)), spikes)


def sinabs_run(graph: Any, x: np.ndarray, timesteps: int, topological: bool = False) -> FrameworkRun:
    """`graph` imported by sinabs for batch B = len(x), run on x repeated over `timesteps` steps
    (with `topological`, its modules run by us in a topological order of the graph)."""
    import sinabs
    import sinabs.layers as sl
    import torch

    batch = len(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nirtorch.load is deprecated
        net = sinabs.from_nir(graph, batch_size=batch)
    neurons = {name: m for name, m in net.named_modules() if isinstance(m, sl.StatefulLayer)}
    spikes: dict[str, np.ndarray] = {}
    for name, module in neurons.items():
        module.register_forward_hook(
            lambda _m, _i, out, name=name: spikes.__setitem__(
                name, out.reshape(batch, timesteps, -1).sum(dim=(1, 2)).numpy().astype(np.float64)
            )
        )
    data = torch.from_numpy(np.asarray(x, dtype=np.float32))
    sequence = data[:, None].expand(batch, timesteps, *data.shape[1:]).reshape(batch * timesteps, *data.shape[1:])
    with torch.no_grad():
        out = _topological(net, graph, sequence) if topological else net(sequence)[0]
    per_sample = out.reshape(batch, timesteps, *out.shape[1:]).numpy()
    return FrameworkRun(running_mean(np.moveaxis(per_sample, 1, 0)), spikes)


def _topological(net: Any, graph: Any, data: Any) -> Any:
    """Run the modules of sinabs's GraphExecutor `net` in a topological order of `graph`'s edges,
    each on the sum of its inputs; the Output node's input."""
    values: dict[str, Any] = {}
    pending = [name for name in graph.nodes]
    while pending:
        name = next(n for n in pending if all(s in values for s, d in graph.edges if d == n))
        pending.remove(name)
        sources = [s for s, d in graph.edges if d == name]
        if not sources:
            values[name] = data
            continue
        total = values[sources[0]]
        for source in sources[1:]:
            total = total + values[source]
        module = getattr(net, name.replace(".", "_"), None)
        values[name] = total if module is None else module(total)
    output = next(n for n, node in graph.nodes.items() if type(node).__name__ == "Output")
    return values[output]


# -- nets built in the frameworks, as their importers build them from NIR ------------------------


def snntorch_conv_net(seed: int = 0) -> Any:
    """A conv net of snnTorch neurons for 1x8x8 inputs: Conv -> Leaky -> AvgPool -> Flatten -> Linear
    -> Synaptic. Reset to zero without delay (what its importer builds from NIR); parameters given
    per neuron, which its export_to_nir needs to type the nodes."""
    import snntorch as snn
    import torch

    torch.manual_seed(seed)
    zero = {"init_hidden": True, "reset_mechanism": "zero", "reset_delay": False}
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        snn.Leaky(beta=torch.full((4, 8, 8), 0.9), threshold=torch.full((4, 8, 8), 0.5), **zero),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
        snn.Synaptic(
            alpha=torch.full((10,), 0.7), beta=torch.full((10,), 0.8), threshold=torch.full((10,), 0.3), **zero
        ),
    )


def snntorch_export(net: Any) -> Any:
    """`net`'s NIR graph by snnTorch's export_to_nir (batch axis left out)."""
    import torch
    from snntorch.export_nir import export_to_nir

    with contextlib.redirect_stdout(io.StringIO()):
        return export_to_nir(net, torch.rand(1, 1, 8, 8), ignore_dims=[0])


def snntorch_steps(net: Any, x: np.ndarray, timesteps: int) -> np.ndarray:
    """The snnTorch net's output after each step [T, B, ...] for `x` every step, from fresh neurons."""
    import snntorch.utils
    import torch

    steps = []
    with torch.no_grad():
        snntorch.utils.reset(net)
        for _ in range(timesteps):
            out = net(torch.from_numpy(np.asarray(x, dtype=np.float32)))
            steps.append((out[0] if isinstance(out, tuple) else out).numpy())
    return np.stack(steps)


def sinabs_conv_net(batch: int, seed: int = 1) -> Any:
    """A conv net of sinabs layers for 1x8x8 inputs and `batch` samples: Conv -> IAF -> SumPool ->
    Flatten -> Linear -> LIF -> Linear -> ExpLeak, built as sinabs.from_nir builds them (IAF with
    min_v_mem = −θ, no input normalization); parameters per neuron, which to_nir needs."""
    import sinabs.layers as sl
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        sl.IAFSqueeze(batch_size=batch, spike_threshold=torch.full((4, 8, 8), 0.5), min_v_mem=-0.5),
        sl.SumPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
        sl.LIFSqueeze(
            tau_mem=torch.full((10,), 8.0), spike_threshold=torch.full((10,), 0.4), batch_size=batch, norm_input=False
        ),
        torch.nn.Linear(10, 3),
        sl.ExpLeakSqueeze(tau_mem=torch.full((3,), 4.0), batch_size=batch, norm_input=False),
    )


def sinabs_export(net: Any, batch: int) -> Any:
    """`net`'s NIR graph by sinabs.nir.to_nir, types inferred (to_nir leaves Conv2d.input_shape None,
    which nir.write cannot store), and the net's states reset (to_nir runs it on a sample)."""
    import sinabs.layers as sl
    import torch
    from sinabs.nir import to_nir

    graph = to_nir(net, torch.rand(batch * 2, 1, 8, 8))
    graph.infer_types()
    for layer in net.modules():
        if isinstance(layer, sl.StatefulLayer):
            layer.reset_states()
    return graph


def sinabs_steps(net: Any, x: np.ndarray, timesteps: int) -> np.ndarray:
    """The sinabs net's output after each step [T, B, ...] for `x` every step (one call, [B*T, ...])."""
    import torch

    batch = len(x)
    data = torch.from_numpy(np.asarray(x, dtype=np.float32))
    sequence = data[:, None].expand(batch, timesteps, *data.shape[1:]).reshape(batch * timesteps, *data.shape[1:])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = net(sequence)
    return np.moveaxis(out.reshape(batch, timesteps, *out.shape[1:]).numpy(), 1, 0)
