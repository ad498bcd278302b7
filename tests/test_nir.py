"""NIR interoperability (export-nir, import-nir) checked against independent frameworks: snnTorch and
sinabs read our exports through their own importers, we read what their exporters write, and a
round trip through NIR gives back the SNN. Tests skip where nir, snntorch or sinabs are missing
(the `nir` extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_snn import CompileOptions, compile_model
from onnx_snn.ir.neurons import attach_functions
from onnx_snn.models.nir_frameworks import (
    norse_run,
    running_mean,
    sinabs_conv_net,
    sinabs_export,
    sinabs_run,
    sinabs_steps,
    snntorch_conv_net,
    snntorch_export,
    snntorch_run,
    snntorch_steps,
)
from onnx_snn.runtime import Session
from tests.helpers import assert_user_error, run_cli, tiny_relu_model

T = 16
SHAPE = (1, 8, 8)


def assert_agree(ours: np.ndarray, theirs: np.ndarray, atol: float = 1e-5) -> None:
    """Per-step outputs [T, B, ...] equal to `atol` on all but 1 % of the samples: two GEMM
    implementations round a current differently in the last bit, and a membrane that lands on the
    threshold within that bit flips one spike (1 sample of 256 in the sinabs net)."""
    off = (
        np.abs(np.asarray(ours, np.float64) - theirs).reshape(ours.shape[0], ours.shape[1], -1).max(axis=(0, 2)) > atol
    )
    assert off.sum() <= max(1, ours.shape[1] // 100), (
        f"{off.sum()} of {ours.shape[1]} samples differ by more than {atol}"
    )


def _needs(*modules: str) -> None:
    for module in modules:
        pytest.importorskip(module)


def _inputs(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(count, *SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """compiled(net, reset, v_init, spikes="binary", **options) -> path of the net
    (graph_builders.cnn or Residual, random weights) compiled with --stats at T = 16 and further
    CompileOptions `options`; cached per module."""
    _needs("torch")
    from tests.graph_builders import Residual, cnn, export_legacy, randomized

    folder, cache = tmp_path_factory.mktemp("nir"), {}

    def make(net: str, reset: str, v_init: float, spikes: str = "binary", **more: object) -> Path:
        key = (net, reset, v_init, spikes, *sorted(more.items()))
        if key not in cache:
            model = export_legacy(randomized(cnn() if net == "cnn" else Residual()), _inputs(2))
            path = folder / f"{net}-{len(cache)}.snn.onnx"
            options = CompileOptions(spikes=spikes, reset=reset, v_init=v_init, stats=True, timesteps=T, **more)
            compile_model(model, path, options, calibration=_inputs(64, seed=1))
            cache[key] = path
        return cache[key]

    return make


# -- the neuron ops ------------------------------------------------------------------------------


def _run_op(op: str, inputs: list, attrs: dict, outputs: int, steps: int, batch: int) -> list[np.ndarray]:
    """One snn `op` node run by onnxruntime: inputs[0] is x [T*B, N], inputs[1] T, the rest constants."""
    import onnxruntime as ort

    names = [f"in{k}" for k in range(len(inputs))]
    inits = [
        numpy_helper.from_array(np.asarray(v, dtype=np.int64 if k == 1 else np.float32), names[k])
        for k, v in enumerate(inputs)
        if k > 0
    ]
    outs = [f"out{k}" for k in range(outputs)]
    width = inputs[0].shape[1]
    graph = helper.make_graph(
        [helper.make_node(op, names, outs, domain="snn", **attrs)],
        "op",
        [helper.make_tensor_value_info("in0", TensorProto.FLOAT, [steps * batch, width])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None, width]) for o in outs],
        inits,
    )
    model = attach_functions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10))
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString()).run(None, {"in0": inputs[0]})


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("spikes", ["single", "multi"])
def test_lif_neuron_matches_numpy_at_every_step(reset, spikes):
    steps, batch, width = 12, 3, 7
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(steps * batch, width)) * 1.5).astype(np.float32)
    beta, gain, bias = np.float32(0.9), rng.uniform(0.5, 1.5, width).astype(np.float32), np.float32(0.05)
    theta, v_reset, v_min = np.float32(1.0), np.float32(-0.25), np.float32(-1.0)
    params = [beta, gain, bias, theta, theta, v_reset, v_min]
    spike_seq, v_final = _run_op(
        "LIFNeuron", [x, steps, np.nan, *params], {"reset": reset, "spikes": spikes}, 2, steps, batch
    )
    v = np.zeros((batch, width), np.float32)
    for t in range(steps):
        v = beta * v + gain * x[t * batch : (t + 1) * batch] + bias
        s = (v > theta).astype(np.float32) if spikes == "single" else np.maximum(0, np.floor(v / theta))
        v = np.where(s > 0, v_reset, v) if reset == "hard" else v - s * theta
        v = np.maximum(v - v_min, 0) + v_min
        np.testing.assert_array_equal(spike_seq[t * batch : (t + 1) * batch], s, err_msg=f"step {t + 1}")
    np.testing.assert_allclose(v_final, v, rtol=1e-6, atol=1e-6)


def test_cuba_lif_and_li_neurons_match_numpy_at_every_step():
    steps, batch, width = 10, 2, 5
    x = (np.random.default_rng(1).normal(size=(steps * batch, width)) * 2).astype(np.float32)
    alpha, g_syn, beta, g_mem, bias, theta = (np.float32(v) for v in (0.8, 0.5, 0.9, 1.2, 0.1, 1.0))
    spike_seq, _, _ = _run_op(
        "CubaLIFNeuron",
        [x, steps, np.nan, np.nan, alpha, g_syn, beta, g_mem, bias, theta, theta, 0.0],
        {},
        3,
        steps,
        batch,
    )
    membrane, _ = _run_op("LINeuron", [x, steps, np.nan, beta, g_mem, bias], {}, 2, steps, batch)
    i = v = u = np.zeros((batch, width), np.float32)
    for t in range(steps):
        x_t = x[t * batch : (t + 1) * batch]
        i = alpha * i + g_syn * x_t
        v = beta * v + g_mem * i + bias
        s = (v > theta).astype(np.float32)
        v = np.where(s > 0, 0, v)
        u = beta * u + g_mem * x_t + bias
        np.testing.assert_array_equal(spike_seq[t * batch : (t + 1) * batch], s, err_msg=f"step {t + 1}")
        np.testing.assert_allclose(membrane[t * batch : (t + 1) * batch], u, rtol=1e-6, atol=1e-6)


# -- export -> import round trip ----------------------------------------------------------------


@pytest.mark.parametrize("net", ["cnn", "residual"])
@pytest.mark.parametrize("v_init", [0.0, 0.5])
def test_round_trip_through_nir_gives_back_the_snn(compiled, tmp_path, net, v_init):
    _needs("nir")
    source = compiled(net, "hard", v_init)
    graph, back = tmp_path / "net.nir", tmp_path / "back.snn.onnx"
    assert run_cli("export-nir", str(source), "-o", str(graph)).returncode == 0
    assert run_cli("import-nir", str(graph), "-o", str(back), "--timesteps", str(T)).returncode == 0
    x = _inputs(32, seed=2)
    original, imported = Session(source).run(x), Session(back).run(x)
    counts = lambda result: np.sort(np.stack(list(result.spikes.values())).sum(axis=1))  # noqa: E731
    if net == "cnn" and v_init == 0.0:  # the same arithmetic: the same bits
        np.testing.assert_array_equal(imported.per_step, original.per_step)
        np.testing.assert_array_equal(counts(imported), counts(original))
    else:  # a residual scale folded into weights, v_init into v_reset and the threshold: float rounding
        np.testing.assert_allclose(imported.per_step, original.per_step, atol=1e-5 * np.abs(original.logits).max())
        np.testing.assert_allclose(counts(imported), counts(original), rtol=1e-3)
    session = Session(back)  # streaming continues the simulation exactly
    streamed = np.concatenate([session.stream(x, steps=5).per_step, session.stream(x, steps=T - 5).per_step])
    np.testing.assert_array_equal(streamed, imported.per_step)


# -- our exports read by snnTorch and sinabs ---------------------------------------------------


def _spikes_by_node(graph, session_spikes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The Session's spikes/<onnx node> counts keyed by the NIR node written for that layer."""
    return {
        name: session_spikes[f"spikes/{node.metadata['onnx_node']}"]
        for name, node in graph.nodes.items()
        if "onnx_node" in node.metadata
    }


#: the one-spike readers: their runner and the compile options that make their neurons ours (Norse
#: is in no extra: its tests run where it is installed)
ONE_SPIKE_READERS = {
    "snntorch": (snntorch_run, {}),
    "norse": (norse_run, {"tie_residual_scales": True}),
}


@pytest.mark.parametrize("reader", sorted(ONE_SPIKE_READERS))
@pytest.mark.parametrize("net", ["cnn", "residual"])
def test_one_spike_readers_run_the_export_like_the_session(compiled, tmp_path, net, reader):
    """snnTorch's and Norse's importers read an export of a hard-reset binary net (Norse: with
    unscaled identity shortcuts, it has no Scale) and run it like the Session, spikes included."""
    _needs("nir", reader)
    import nir

    runner, options = ONE_SPIKE_READERS[reader]
    source, path = compiled(net, "hard", 0.0, **options), tmp_path / "net.nir"
    assert run_cli("export-nir", str(source), "-o", str(path), "--for", reader).returncode == 0
    x = _inputs(16, seed=3)
    ours, theirs = Session(source).run(x), runner(nir.read(str(path)), x, T)
    assert_agree(ours.per_step, theirs.per_step, atol=1e-5 * np.abs(ours.per_step).max())
    expected = _spikes_by_node(nir.read(str(path)), ours.spikes)
    assert expected and all(np.array_equal(theirs.spikes[name], counts) for name, counts in expected.items())


def test_sinabs_runs_the_export_as_import_from_sinabs_predicts(compiled, tmp_path):
    """sinabs emits ⌊v/θ⌋ spikes a step and clamps IF membranes at −θ: its run differs from the
    Session's, and import-nir --from sinabs reproduces it exactly."""
    _needs("nir", "sinabs")
    import nir

    source, path, back = compiled("cnn", "soft", 0.0), tmp_path / "net.nir", tmp_path / "back.snn.onnx"
    result = run_cli("export-nir", str(source), "-o", str(path), "--for", "sinabs")
    assert result.returncode == 0 and "⌊v/θ⌋" in result.stdout
    assert run_cli("import-nir", str(path), "-o", str(back), "--from", "sinabs", "--timesteps", str(T)).returncode == 0
    x = _inputs(24, seed=4)
    theirs, predicted = sinabs_run(nir.read(str(path)), x, T), Session(back).run(x)
    assert_agree(predicted.per_step, theirs.per_step, atol=1e-5 * np.abs(theirs.per_step).max())
    for name, counts in theirs.spikes.items():
        np.testing.assert_array_equal(predicted.spikes[f"spikes/{name}"], counts)


@pytest.mark.parametrize("net", ["cnn", "residual"])
def test_sinabs_runs_the_multi_spike_export_like_the_session(compiled, tmp_path, net):
    """Compiled with sinabs's neurons (--spikes multi --v-min -1 --v-init 0) and identity shortcuts
    left unscaled (--tie-residual-scales), the export runs in sinabs's own importer and executor
    like the Session: the same outputs at every step and the same spikes per layer."""
    _needs("nir", "sinabs")
    import nir

    source = compiled(net, "soft", 0.0, spikes="multi", v_min=-1.0, tie_residual_scales=True)
    path = tmp_path / "net.nir"
    result = run_cli("export-nir", str(source), "-o", str(path), "--for", "sinabs")
    assert result.returncode == 0 and "⌊v/θ⌋" not in result.stdout, result.stdout + result.stderr
    x = _inputs(24, seed=5)
    ours, theirs = Session(source).run(x), sinabs_run(nir.read(str(path)), x, T)
    assert_agree(ours.per_step, theirs.per_step, atol=1e-5 * np.abs(ours.per_step).max())
    expected = _spikes_by_node(nir.read(str(path)), ours.spikes)
    assert expected and all(np.array_equal(theirs.spikes[name], counts) for name, counts in expected.items())
    assert max(counts.max() for counts in expected.values()) > 0


def test_depth_first_order_puts_each_join_after_both_inputs(compiled):
    """A depth-first executor (sinabs's) runs an identity-shortcut join after the long branch."""
    _needs("nir")
    from onnx_snn.modelio import load_model
    from onnx_snn.nir_io.dialects import DIALECTS
    from onnx_snn.nir_io.export import depth_first_edges
    from onnx_snn.nir_io.fold import fit
    from onnx_snn.nir_io.lower import lower

    source = compiled("residual", "soft", 0.0, spikes="multi", v_min=-1.0, tie_residual_scales=True)
    net = fit(lower(load_model(source), str(source)), DIALECTS["sinabs"])
    joins = [name for name in net.layers if len(net.inputs_of(name)) > 1]
    assert joins and not any(net.layers[s].kind == "scale" for j in joins for s in net.inputs_of(j))
    edges = depth_first_edges(net, DIALECTS["sinabs"], str(source))
    assert sorted(edges) == sorted(net.edges)
    for join in joins:  # the shortcut edge into the join comes after the block's other consumer
        shortcut = next(s for s in net.inputs_of(join) if net.layers[s].kind == "neuron")
        consumers = [d for s, d in edges if s == shortcut]
        assert consumers[-1] == join and len(consumers) == 2


# -- what snnTorch's and sinabs's exporters write, read by import-nir --------------------------


def test_snntorch_exported_net_imports_exactly(tmp_path):
    """A conv net of snnTorch Leaky and Synaptic neurons (reset to zero without delay, which is what its
    importer builds from NIR), exported with its export_to_nir: import-nir --from snntorch runs it
    as snnTorch does, step by step."""
    _needs("nir", "snntorch")
    import nir

    net = snntorch_conv_net()
    nir.write(str(tmp_path / "net.nir"), snntorch_export(net))
    back = tmp_path / "net.snn.onnx"
    assert run_cli("import-nir", str(tmp_path / "net.nir"), "-o", str(back), "--from", "snntorch").returncode == 0
    x = _inputs(256, seed=5)
    ours = Session(back).run(x, timesteps=T)
    assert_agree(ours.per_step, running_mean(snntorch_steps(net, x, T)))
    assert ours.spikes["spikes/5"].sum() > 0  # the Synaptic layer spikes


def test_sinabs_exported_net_imports_exactly(tmp_path):
    """A conv net of sinabs IAF, LIF and ExpLeak layers (built as its importer builds them from
    NIR), exported with sinabs.nir.to_nir: import-nir --from sinabs runs it as sinabs does."""
    _needs("nir", "sinabs")
    import nir

    batch = 256
    net = sinabs_conv_net(batch)
    nir.write(str(tmp_path / "net.nir"), sinabs_export(net, batch))
    back = tmp_path / "net.snn.onnx"
    assert run_cli("import-nir", str(tmp_path / "net.nir"), "-o", str(back), "--from", "sinabs").returncode == 0
    x = _inputs(batch, seed=6)
    ours = Session(back).run(x, timesteps=T)
    assert_agree(ours.per_step, running_mean(sinabs_steps(net, x, T)))
    theirs = sinabs_run(nir.read(str(tmp_path / "net.nir")), x, T)
    assert_agree(ours.per_step, theirs.per_step)
    for name, counts in theirs.spikes.items():
        if f"spikes/{name}" in ours.spikes:
            assert (ours.spikes[f"spikes/{name}"] != counts).sum() <= batch // 100, name


def test_nir_dialect_discretizes_lif_cubalif_and_li_by_forward_euler(tmp_path):
    _needs("nir")
    import nir

    rng = np.random.default_rng(7)
    w1, w2 = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(3, 6)).astype(np.float32)
    ones = np.ones(6, np.float32)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([4])),
            "fc1": nir.Affine(weight=w1, bias=np.zeros(6, np.float32)),
            "lif": nir.LIF(tau=4 * ones, r=2 * ones, v_leak=0.1 * ones, v_threshold=ones, v_reset=0 * ones),
            "cuba": nir.CubaLIF(
                tau_syn=2 * ones, tau_mem=5 * ones, r=ones, v_leak=0 * ones, v_threshold=0.2 * ones, w_in=3 * ones
            ),
            "fc2": nir.Linear(weight=w2),
            "li": nir.LI(tau=np.full(3, 3.0), r=np.ones(3), v_leak=np.zeros(3)),
            "output": nir.Output(np.array([3])),
        },
        edges=[
            ("input", "fc1"),
            ("fc1", "lif"),
            ("fc1", "cuba"),
            ("lif", "fc2"),
            ("cuba", "fc2"),
            ("fc2", "li"),
            ("li", "output"),
        ],
    )
    nir.write(str(tmp_path / "net.nir"), graph)
    back = tmp_path / "net.snn.onnx"
    assert run_cli("import-nir", str(tmp_path / "net.nir"), "-o", str(back), "--dt", "0.5").returncode == 0
    x = rng.uniform(0, 1, size=(5, 4)).astype(np.float32)
    dt, current = 0.5, x @ w1.T
    v = i = c = li = 0.0
    outputs = []
    for _ in range(T):
        v = v + dt / 4 * (0.1 - v + 2 * current)
        s1 = (v > 1).astype(np.float32)
        v = np.where(s1 > 0, 0, v)
        i = i + dt / 2 * (3 * current - i)
        c = c + dt / 5 * (-c + i)
        s2 = (c > 0.2).astype(np.float32)
        c = np.where(s2 > 0, 0, c)
        li = li + dt / 3 * (-li + (s1 + s2) @ w2.T)
        outputs.append(li)
    assert_agree(Session(back).run(x, timesteps=T).per_step, running_mean(np.stack(outputs)))


# -- refusals: one line, exit 2 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reset", "v_init", "dialect", "net", "fragment"),
    [
        ("soft", 0.0, "nir", "cnn", "--reset hard"),
        ("hard", 0.5, "snntorch", "cnn", "--v-init 0"),
        ("hard", 0.0, "sinabs", "cnn", "--reset soft"),
        ("soft", 0.0, "sinabs", "residual", "residual join"),
    ],
)
def test_export_refuses_what_the_reader_cannot_run(compiled, tmp_path, reset, v_init, dialect, net, fragment):
    _needs("nir")
    out = tmp_path / "net.nir"
    result = run_cli("export-nir", str(compiled(net, reset, v_init)), "-o", str(out), "--for", dialect)
    assert_user_error(result, fragment, "snn.IFNeuron")
    assert not out.exists()


@pytest.mark.parametrize("dialect", ["nir", "snntorch"])
def test_export_refuses_multi_spikes_for_one_spike_readers(compiled, tmp_path, dialect):
    _needs("nir")
    source = compiled("cnn", "soft", 0.0, spikes="multi")
    result = run_cli("export-nir", str(source), "-o", str(tmp_path / "n.nir"), "--for", dialect)
    assert_user_error(result, "--spikes binary", "MultiSpikeIFNeuron")


def test_export_refuses_signed_spikes(compiled, tmp_path):
    _needs("nir")
    result = run_cli("export-nir", str(compiled("cnn", "soft", 0.5, spikes="signed")), "-o", str(tmp_path / "n.nir"))
    assert_user_error(result, "--spikes binary", "SignedIFNeuron")


@pytest.mark.parametrize(("neuron", "fragment"), [("signgd", "signGD"), ("ttfs", "TTFS")])
def test_export_refuses_signgd_and_ttfs(tmp_path, neuron, fragment):
    _needs("nir")
    model = tmp_path / "ann.onnx"
    onnx.save(tiny_relu_model(), model)
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).uniform(size=(32, 4)).astype(np.float32))
    snn_path = tmp_path / "snn.onnx"
    assert (
        run_cli("compile", str(model), "-o", str(snn_path), "--calib", str(calib), "--neuron", neuron, "-q").returncode
        == 0
    )
    assert_user_error(run_cli("export-nir", str(snn_path), "-o", str(tmp_path / "n.nir")), fragment, "--neuron if")


def _small_graph(nir, **replace):
    nodes = {
        "input": nir.Input(np.array([4])),
        "fc": nir.Affine(weight=np.ones((3, 4), np.float32), bias=np.zeros(3, np.float32)),
        "if": nir.IF(r=np.ones(3), v_threshold=np.ones(3), v_reset=np.zeros(3)),
        "output": nir.Output(np.array([3])),
    }
    nodes.update(replace)
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "if"), ("if", "output")], type_check=False)


def test_import_refuses_bad_files_in_one_line(tmp_path):
    _needs("nir")
    import nir

    good = tmp_path / "good.nir"
    nir.write(str(good), _small_graph(nir))
    truncated = tmp_path / "truncated.nir"
    truncated.write_bytes(good.read_bytes()[:300])
    text = tmp_path / "text.nir"
    text.write_text("not hdf5")
    unknown = tmp_path / "unknown.nir"
    nir.write(str(unknown), _small_graph(nir, **{"if": nir.Threshold(threshold=np.ones(3))}))
    mismatch = tmp_path / "mismatch.nir"
    nir.write(
        str(mismatch),
        _small_graph(nir, fc=nir.Affine(weight=np.ones((3, 5), np.float32), bias=np.zeros(3, np.float32))),
    )
    out = tmp_path / "out.onnx"
    cases = [
        (truncated, [], "truncated"),
        (text, [], "truncated"),
        (tmp_path / "missing.nir", [], "not found"),
        (unknown, [], "Threshold"),
        (mismatch, [], "shape [4]"),
        (good, ["--from", "snntorch"], "no faithful IF"),
    ]
    for path, extra, fragment in cases:
        assert_user_error(run_cli("import-nir", str(path), "-o", str(out), *extra), str(path.name), fragment)
        assert not out.exists()
    assert_user_error(run_cli("import-nir", str(good), "-o", str(good)), "would overwrite")
    assert run_cli("import-nir", str(good), "-o", str(out)).returncode == 0


def test_without_nir_the_commands_say_what_to_install(compiled, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)  # import nir raises ImportError
    result = run_cli("export-nir", str(compiled("cnn", "hard", 0.0)), "-o", str(tmp_path / "n.nir"))
    assert_user_error(result, "needs the nir package", "pip install 'onnx-snn[nir]'")
    assert_user_error(run_cli("import-nir", str(tmp_path / "n.nir"), "-o", str(tmp_path / "o.onnx")), "onnx-snn[nir]")


def test_import_refuses_recurrent_graphs(tmp_path):
    _needs("nir")
    import nir

    graph = _small_graph(nir, rec=nir.Linear(weight=np.eye(3, dtype=np.float32)))
    graph.edges += [("if", "rec"), ("rec", "if")]
    nir.write(str(tmp_path / "rec.nir"), graph)
    assert_user_error(run_cli("import-nir", str(tmp_path / "rec.nir"), "-o", str(tmp_path / "o.onnx")), "cycle")
