"""`--neuron ttfs`: the passes (input-range and BiasMap folds, windows, audit, spike-time ops),
exactness on conv nets with BN after ReLU, residuals and pooling, statistics, and every refusal."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from onnx_snn.api import compile_model
from onnx_snn.cli import main
from onnx_snn.errors import SnnError
from onnx_snn.options import CompileOptions
from onnx_snn.runtime import Session

IMAGE = (1, 12, 12)


def _batch_norm(channels: int, rank: int = 2, negative: bool = True) -> nn.Module:
    """A BN with random statistics and some negative scales (the sign-aware pooling case)."""
    norm = nn.BatchNorm2d(channels) if rank == 2 else nn.BatchNorm1d(channels)
    scale = torch.randn(channels)
    norm.weight.data = scale if negative else scale.abs()
    norm.bias.data = 0.3 * torch.randn(channels)
    norm.running_mean.data = torch.rand(channels)
    norm.running_var.data = torch.rand(channels) + 0.5
    return norm


class _Residual(nn.Module):
    """conv → ReLU → conv, plus the block's input (a skip from an earlier window), → ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first, self.second = (
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.second(torch.relu(self.first(x))) + x)


class _SumThenPool(nn.Module):
    """relu(a) + relu(b) → MaxPool: the pool sees a sum of two layers, not one layer's spikes."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.max_pool2d(torch.relu(self.a(x)) + torch.relu(self.b(x)), 2)
        return self.head(pooled.flatten(1))


def _export(model: nn.Module, path, shape=IMAGE) -> np.ndarray:
    """Export `model` (eval mode, legacy exporter, dynamic batch); return 256 inputs in [0, 1)."""
    model.eval()
    sample = torch.rand(2, *shape)
    torch.onnx.export(
        model,
        sample,
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamo=False,
        dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
    )
    return np.random.default_rng(0).random((256, *shape), dtype=np.float32)


def _ann(path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _vgg_block() -> nn.Module:
    """VGG style, BN after every ReLU: conv(pad 1) → ReLU → BN → MaxPool → conv(pad 1) → ReLU → BN →
    Flatten → Linear → ReLU → BN → Linear."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        _batch_norm(6),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        _batch_norm(8),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 16),
        nn.ReLU(),
        _batch_norm(16, rank=1),
        nn.Linear(16, 10),
    )


def test_bias_map_fold_on_padded_convs_equals_the_unfolded_graph(tmp_path):
    model_path = tmp_path / "vgg.onnx"
    x = 3.0 * _export(_vgg_block(), model_path) - 1.0  # input range [-1, 2]: P2 gives a bias map too
    out = tmp_path / "vgg.snn.onnx"
    compile_model(
        model_path,
        out,
        CompileOptions(neuron="ttfs", input_range=(-1.0, 2.0), dump_after=["ttfs_fold_affine"]),
        calibration=x,
    )
    folded = onnx.load(tmp_path / "vgg.snn.after-ttfs_fold_affine.onnx")
    ops = [n.op_type for n in folded.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Add") >= 2  # position-dependent bias maps
    pool = ops.index("MaxPool")
    assert ops[pool - 1] == ops[pool + 1] == "Mul"  # sign-aware pooling: a BN scale is negative
    assert ops.count("Mul") == 3  # that pair, and the x̃ encoding
    np.testing.assert_allclose(
        _ann(tmp_path / "vgg.snn.after-ttfs_fold_affine.onnx", x), _ann(model_path, x), rtol=0, atol=1e-5
    )


def test_b1_maps_a_vgg_block_exactly_with_earliest_spike_pooling(tmp_path):
    model_path = tmp_path / "vgg.onnx"
    x = _export(_vgg_block(), model_path)
    out = tmp_path / "vgg.snn.onnx"
    result = compile_model(model_path, out, CompileOptions(neuron="ttfs", stats=True), calibration=x[:128])
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert ops.count("TTFSNeuron") == 3 and ops.count("TTFSEncoder") == 1 and "Relu" not in ops
    session = Session(out)
    run = session.run(x[128:])
    ann = _ann(model_path, x[128:])
    assert np.abs(run.logits - ann).max() <= 1e-5
    ttfs = result.metadata["ttfs"]
    starts = [layer["t_min"] for layer in ttfs["layers"].values()]
    assert starts[0] == 1.0 and starts == sorted(starts)
    assert ttfs["t_read"] == pytest.approx(1.0 + sum(layer["B"] for layer in ttfs["layers"].values()))
    for name, layer in ttfs["layers"].items():
        times = run.spike_times[f"spike_times/{name}"]
        assert times.min() >= layer["t_min"] - 1e-5 and times.max() <= layer["t_max"] + 1e-5
        fired = (times < layer["t_max"] - 1e-6).reshape(len(times), -1).sum(axis=1)
        assert np.abs(run.spikes[f"spikes/{name}"] - fired).max() <= 0.01 * times[0].size
        assert np.all(run.synops[f"synops/{name}"] >= run.spikes[f"spikes/{name}"])


def test_synaptic_events_count_spikes_times_non_zero_fan_out(tmp_path):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        net[3].weight[:, :4] = 0.0  # hidden neurons 0..3 reach no read-out synapse
    model_path = tmp_path / "mlp.onnx"
    x = _export(net, model_path, shape=(1, 4, 4))
    out = tmp_path / "mlp.snn.onnx"
    result = compile_model(model_path, out, CompileOptions(neuron="ttfs", stats=True), calibration=x)
    (name,) = result.metadata["ttfs"]["layers"]
    run = Session(out).run(x)
    hidden = np.maximum(x.reshape(len(x), -1) @ net[1].weight.detach().numpy().T + net[1].bias.detach().numpy(), 0)
    np.testing.assert_array_equal(run.spikes[f"spikes/{name}"], (hidden > 0).sum(axis=1))
    np.testing.assert_array_equal(run.synops[f"synops/{name}"], 3 * (hidden[:, 4:] > 0).sum(axis=1))


def test_residual_add_is_aligned_with_a_window_correction(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), _Residual(4), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)
    )
    model_path = tmp_path / "res.onnx"
    x = _export(net, model_path)
    out = tmp_path / "res.snn.onnx"
    result = compile_model(model_path, out, CompileOptions(neuron="ttfs"), calibration=x[:128])
    layers = result.metadata["ttfs"]["layers"]
    corrections = [delta for layer in layers.values() for delta in layer["inputs"].values()]
    assert max(corrections) > 0.0  # the skip spikes ended one window before the block's output layer
    assert np.abs(Session(out).run(x[128:]).logits - _ann(model_path, x[128:])).max() <= 1e-5


def test_global_average_pool_maps_exactly(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10)
    )
    model_path = tmp_path / "gap.onnx"
    x = _export(net, model_path)
    out = tmp_path / "gap.snn.onnx"
    compile_model(model_path, out, CompileOptions(neuron="ttfs"), calibration=x)
    assert np.abs(Session(out).run(x).logits - _ann(model_path, x)).max() <= 1e-5


def _cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_refusals_are_one_line_errors(tmp_path, capsys):
    torch.manual_seed(0)
    cases = {
        "gelu": (nn.Sequential(nn.Flatten(), nn.Linear(144, 8), nn.GELU(), nn.Linear(8, 3)), "--neuron signgd"),
        "pool_of_sum": (_SumThenPool(), "cannot be aligned"),
        "topk": (None, "not supported"),
    }
    for name, (net, expected) in cases.items():
        model_path = tmp_path / f"{name}.onnx"
        if net is None:
            _topk_model(model_path)
        else:
            x = _export(net, model_path)
            np.save(tmp_path / "calib.npy", x)
        err = _cli_error(
            capsys,
            [
                "compile",
                str(model_path),
                "-o",
                str(tmp_path / f"{name}.snn.onnx"),
                "--neuron",
                "ttfs",
                "--calib",
                str(tmp_path / "calib.npy"),
            ],
        )
        assert expected in err and str(model_path) in err, err


def _topk_model(path) -> None:
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Flatten", ["x"], ["f"]),
            onnx.helper.make_node("Relu", ["f"], ["r"]),
            onnx.helper.make_node("TopK", ["r", "k"], ["logits", "i"]),
        ],
        "topk",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", *IMAGE])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 3])],
        [onnx.numpy_helper.from_array(np.asarray([3], dtype=np.int64), "k")],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)


def test_calibration_outside_the_input_range_is_refused(tmp_path, capsys):
    net = nn.Sequential(nn.Flatten(), nn.Linear(144, 8), nn.ReLU(), nn.Linear(8, 3))
    model_path = tmp_path / "mlp.onnx"
    np.save(tmp_path / "calib.npy", 2.0 * _export(net, model_path))
    err = _cli_error(
        capsys,
        [
            "compile",
            str(model_path),
            "-o",
            str(tmp_path / "out.onnx"),
            "--neuron",
            "ttfs",
            "--input-range",
            "0",
            "1",
            "--calib",
            str(tmp_path / "calib.npy"),
        ],
    )
    assert "outside --input-range" in err and not (tmp_path / "out.onnx").exists()


def test_model_a_refuses_conv_nets_and_points_to_b1(tmp_path):
    model_path = tmp_path / "vgg.onnx"
    x = _export(_vgg_block(), model_path)
    with pytest.raises(SnnError, match="dense ReLU chains.*--ttfs-model b1"):
        compile_model(model_path, None, CompileOptions(neuron="ttfs", ttfs_model="a"), calibration=x)


def test_negative_zeta_is_audited(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(144, 8), nn.ReLU(), nn.Linear(8, 3))
    model_path = tmp_path / "mlp.onnx"
    x = _export(net, model_path)
    result = compile_model(model_path, None, CompileOptions(neuron="ttfs", zeta=-0.5), calibration=x)
    (audit,) = result.metadata["ttfs"]["audit"].values()
    assert audit["above_window"] > 0 and any("exceed B_n" in note for note in result.notes)


def test_inspect_and_eval_report_the_ttfs_figures(tmp_path, capsys):
    net = nn.Sequential(nn.Flatten(), nn.Linear(144, 8), nn.ReLU(), nn.Linear(8, 3))
    model_path = tmp_path / "mlp.onnx"
    x = _export(net, model_path)
    np.save(tmp_path / "calib.npy", x)
    np.savez(tmp_path / "test.npz", x=x, y=np.zeros(len(x), dtype=np.int64))
    out = tmp_path / "mlp.snn.onnx"
    assert (
        main(
            [
                "compile",
                str(model_path),
                "-o",
                str(out),
                "--neuron",
                "ttfs",
                "--stats",
                "-q",
                "--calib",
                str(tmp_path / "calib.npy"),
            ]
        )
        == 0
    )
    assert "t_read" in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "TTFS model b1, zeta 0.5" in shown and "window [1," in shown
    report = tmp_path / "report.json"
    assert (
        main(
            [
                "eval",
                str(out),
                "--data",
                str(tmp_path / "test.npz"),
                "--ann",
                str(model_path),
                "-q",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for figure in ("argmax agreement with the ANN 100.00%", "max |logit error|", "spikes per neuron", "latency t_read"):
        assert figure in printed, printed
    assert json.loads(report.read_text())["max_logit_error"][0] <= 1e-5
