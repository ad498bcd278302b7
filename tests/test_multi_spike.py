"""`--spikes multi` (snn.MultiSpikeIFNeuron: ⌊v/θ⌋ spikes a step, soft reset, floor --v-min),
`--spikes burst` (snn.BurstIFNeuron: signed, ⌊u⌋ spikes a step) and `--tie-residual-scales`
(identity shortcuts carry spikes unscaled) through the compiler."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from graph_builders import Residual, export_legacy, randomized
from helpers import assert_user_error, run_cli, seeded_net
from sklearn.datasets import load_digits
from test_capped_relu import relu6_mlp
from torch import nn

from onnx_snn import CompileOptions, compile_model
from onnx_snn.errors import SnnError
from onnx_snn.runtime import Session
from onnx_snn.runtime.ann import AnnRunner

DIGITS = "compiler/data/digits_mlp.onnx"
CALIB = "compiler/data/digits_test.npz"


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--v-min", "-1"], "add --spikes multi"),
        (["--spikes", "multi", "--reset", "hard"], "add --spikes binary"),
        (["--spikes", "multi", "--v-min", "0.5"], "--v-min must be a number <= 0"),
    ],
)
def test_option_conflicts_exit_2_in_one_line(tmp_path, flags, fragment):
    out = tmp_path / "snn.onnx"
    result = run_cli("compile", DIGITS, "-o", str(out), "--calib", CALIB, *flags)
    assert_user_error(result, fragment)
    assert not out.exists()


def test_multi_spike_digits_mlp_tracks_the_ann_and_bursts():
    x = np.load(CALIB)["x"].astype(np.float32)
    options = CompileOptions(spikes="multi", v_min=-1.0, v_init=0.0, timesteps=64, stats=True)
    result = compile_model(DIGITS, None, options, calibration=x[:256])
    ops = {n.op_type for n in result.model.graph.node}
    assert ops & {"MultiSpikeIFNeuron", "MultiSpikeIFNeuronConstantInput"} and "SignedIFNeuron" not in ops
    run = Session(result.model).run(x[-64:], timesteps=64)
    ann = AnnRunner(DIGITS).run({_input_name(onnx.load(DIGITS)): x[-64:]})
    agreement = (run.logits.argmax(1) == ann.argmax(1)).mean()
    assert agreement >= 0.95
    counts = [spikes for name, spikes in run.spikes.items() if name.startswith("spikes/")]
    assert counts and all(np.all(c >= 0) for c in counts)


def test_a_capped_relu_is_refused_under_multi_spikes():
    digits = (load_digits().data / 16.0 * 12.0).astype(np.float32)
    ann = export_legacy(seeded_net(relu6_mlp), digits[:2])
    with pytest.raises(SnnError, match="--spikes signed, binary, burst"):
        compile_model(ann, None, CompileOptions(spikes="multi"), calibration=digits[:64])


def test_burst_gives_a_capped_relu_a_capped_burst_neuron_and_tracks_the_ann():
    """Under --spikes burst a ReLU bursts (no cap), a capped ReLU gets a burst neuron whose count
    stays at most one spike a step on average, which is what reproduces it."""
    digits = (load_digits().data / 16.0 * 12.0).astype(np.float32)
    net = seeded_net(
        lambda: nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU6(), nn.Linear(32, 10))
    )
    ann = export_legacy(net, digits[:2])
    model = compile_model(ann, None, CompileOptions(spikes="burst"), calibration=digits[:256]).model
    ops = {n.op_type for n in model.graph.node}
    assert {"CappedBurstIFNeuron", "BurstIFNeuronConstantInput"} <= ops
    x = digits[-64:]
    expected = AnnRunner(ann).run({_input_name(ann): x})
    got = Session(model).run(x, 256).logits
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 0.05


def test_tied_residual_scales_leave_the_identity_shortcut_unscaled():
    """Without the option a per-channel Mul rescales the shortcut into the join; with it the block
    input and the join neuron share one λ, the shortcut is a plain edge, and the SNN still tracks the ANN."""
    x = np.random.default_rng(0).uniform(0, 1, size=(96, 1, 8, 8)).astype(np.float32)
    ann = export_legacy(randomized(Residual()), x[:2])

    def shortcut_muls(tie: bool) -> tuple[int, onnx.ModelProto]:
        options = CompileOptions(spikes="multi", tie_residual_scales=tie, timesteps=256)
        model = compile_model(ann, None, options, calibration=x[:64]).model
        adds = [n for n in model.graph.node if n.op_type == "Add" and len(n.input) == 2]
        producers = {o: n for n in model.graph.node for o in n.output}
        muls = sum(1 for add in adds for name in add.input if name in producers and producers[name].op_type == "Mul")
        return muls, model

    untied, _ = shortcut_muls(False)
    tied, model = shortcut_muls(True)
    assert untied >= 1 and tied == 0
    expected = AnnRunner(ann).run({_input_name(ann): x[64:]})
    got = Session(model).run(x[64:], timesteps=256).logits
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 0.05


def _input_name(model: onnx.ModelProto) -> str:
    return model.graph.input[0].name


def test_a_capped_burst_net_streams_in_time_chunks_like_one_run():
    """The capped burst neuron's headroom h is state: chunks of a stream continue the run exactly."""
    digits = (load_digits().data / 16.0 * 12.0).astype(np.float32)
    ann = export_legacy(seeded_net(relu6_mlp), digits[:2])
    model = compile_model(ann, None, CompileOptions(), calibration=digits[:256]).model
    assert "CappedBurstIFNeuronConstantInput" in {n.op_type for n in model.graph.node}
    x = digits[-16:]
    full = Session(model).run(x, 12)
    session = Session(model)
    parts = [session.stream(x, steps) for steps in (5, 1, 6)]
    np.testing.assert_array_equal(np.concatenate([p.per_step for p in parts]), full.per_step)
    ports = {port.input for port in session.stepper.ports}
    assert any(name.endswith("/h0") for name in ports)
