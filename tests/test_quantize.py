import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgevpr.config import ModelConfig, QuantizeConfig, load_config
from edgevpr.errors import ConfigError, EdgeVPRError
from edgevpr.models import build_model
from edgevpr.quantize import calibration
from edgevpr.quantize.bn_fold import fold_batchnorm
from edgevpr.quantize.onnx_export import export_onnx, get_metadata, run_onnx
from edgevpr.quantize.pipeline import quantize_model
from edgevpr.runtime.onnx_model import OnnxModel
from tests.conftest import (
    GARDENS_POINT,
    MOBILENET_TFLITE,
    int8_exact,
    int8_layout_params,
    needs,
    write_image,
)


def _randomise_bn(model):
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)


@pytest.mark.parametrize(
    "backbone, expected", [("resnet18_conv4", 15), ("efficientnet_lite0", 49), ("mobilenetv2", 52)]
)
def test_bn_folding_is_numerically_equivalent(backbone, expected):
    model = build_model(ModelConfig(backbone=backbone, aggregator="gem"))
    _randomise_bn(model)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
        folded = fold_batchnorm(model, x[:1])
        after = model(x)
    assert folded == expected
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert (before - after).abs().max() <= 1e-4


@pytest.mark.parametrize("backbone, same", [("mobilenetv2", True), ("efficientnet_lite0", False)])
def test_ort_fp32_reproduces_torch_at_any_size(backbone, same):
    """TF-SAME convolutions (ours, and timm's in Lite0) export as Conv auto_pad=SAME_UPPER: no
    Pad node, and the export is dynamic-size."""
    model = build_model(ModelConfig(backbone=backbone, aggregator="gem", tf_same_padding=same, pretrained=False))
    proto = export_onnx(model, torch.zeros(1, 3, 96, 128), {"note": "test"})
    meta = get_metadata(proto)
    assert meta["note"] == "test" and meta["dynamic_size"] is True and meta["export_size"] == [96, 128]
    assert "Pad" not in {node.op_type for node in proto.graph.node}
    same_upper = [
        n for n in proto.graph.node if any(a.name == "auto_pad" and a.s == b"SAME_UPPER" for a in n.attribute)
    ]
    assert len(same_upper) == 5  # the five stride-2 convolutions of both backbones
    for shape in ((2, 3, 96, 128), (1, 3, 129, 175)):
        x = torch.rand(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        assert np.abs(run_onnx(proto.SerializeToString(), x.numpy()) - expected).max() <= 1e-4


def test_size_dependent_models_export_fixed_size():
    model = build_model(ModelConfig(backbone="squeezenet", aggregator="rmac"))
    proto = export_onnx(model, torch.zeros(1, 3, 64, 96), {})
    assert get_metadata(proto)["dynamic_size"] is False
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[2:]] == [64, 96]
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert np.abs(run_onnx(proto.SerializeToString(), x.numpy()) - model(x).numpy()).max() <= 1e-4


def test_calibration_methods_differ_and_entropy_clips_outliers():
    rng = np.random.default_rng(0)
    values = np.abs(np.concatenate([rng.normal(0, 1, 200_000), [40.0, -35.0]]))
    hist, _ = np.histogram(values, bins=calibration.BINS, range=(0, 40.0))
    stats = calibration.CalibrationStats({"t": calibration.TensorStats(-35.0, 40.0, hist, values.size)}, 1)
    minmax = calibration.ranges(stats, "minmax", symmetric=False)["t"]
    percentile = calibration.ranges(stats, "percentile", symmetric=False)["t"]
    entropy = calibration.ranges(stats, "entropy", symmetric=False)["t"]
    assert minmax == (-35.0, 40.0)
    assert 3.0 < percentile[1] < 6.0  # 99.999 % of |N(0, 1)| lies below about 4.4
    assert 2.0 < entropy[1] < 10.0 and entropy[0] == -entropy[1]
    assert len({minmax, percentile, entropy}) == 3
    assert calibration.ranges(stats, "minmax", symmetric=True)["t"] == (-40.0, 40.0)


def _uint8_error(values, low, high):
    """Mean squared error of ``values`` quantized to 256 levels on [low, high], clipped."""
    step = (high - low) / 255
    return float(np.mean((np.clip(np.round((values - low) / step), 0, 255) * step + low - values) ** 2))


@pytest.mark.parametrize("tail", ["gaussian", "relu"])
def test_mse_calibration_finds_the_range_with_the_least_quantization_error(tail):
    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, 400_000)
    if tail == "relu":
        values = np.maximum(values, 0)
    values = np.concatenate([values, [30.0] if tail == "relu" else [30.0, -25.0]])
    hist, _ = np.histogram(np.abs(values), bins=calibration.BINS, range=(0, 30.0))
    stats = calibration.CalibrationStats(
        {"t": calibration.TensorStats(float(values.min()), 30.0, hist, values.size)}, 1
    )
    errors = {
        method: _uint8_error(values, *calibration.ranges(stats, method, symmetric=False)["t"])
        for method in calibration.METHODS
    }
    assert errors["mse"] == min(errors.values()), errors
    assert errors["mse"] < 0.9 * min(errors["minmax"], errors["percentile"]), errors


def _quantize(
    tmp_path,
    precision,
    target="cpu",
    calib=None,
    size=(64, 96),
    backbone="mobilenetv2",
    name=None,
    calibration="minmax",
    int8_layout="auto",
    **model,
):
    config = load_config(
        overrides={"model": {"backbone": backbone, "aggregator": "gem"} | model, "data": {"size": size} if size else {}}
    )
    out = tmp_path / (name or f"{precision}-{target}.onnx")
    options = QuantizeConfig(
        precision=precision, target=target, calibration=calibration, calib=calib, calib_count=6, int8_layout=int8_layout
    )
    return quantize_model(config, options, str(out)), out


@pytest.fixture
def calib_folder(tmp_path):
    for i in range(6):
        write_image(tmp_path / "calib" / f"{i}.jpg", i, size=(96, 64))
    return str(tmp_path / "calib")


def test_int8_targets_have_per_tensor_activation_scales(tmp_path, calib_folder):
    _, cpu = _quantize(tmp_path, "int8", "cpu", calib_folder)
    model = onnx.load(str(cpu))
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "QLinearConv"]
    assert len(convs) >= 50
    for node in convs:
        assert initializers[node.input[1]].size == 1  # input activation scale: one per tensor
        assert initializers[node.input[2]].dtype == np.uint8  # uint8 activations
        assert (
            initializers[node.input[3]].dtype == np.int8 and initializers[node.input[4]].size > 1
        )  # per-channel int8 weights
    _, trt = _quantize(tmp_path, "int8", "tensorrt", calib_folder, calibration="layer-error")
    model = onnx.load(str(trt))
    won = get_metadata(model)["calibration_choice"]  # tensors whose rules disagreed, by the rule chosen
    assert sum(won.values()) >= 50 and won["mse"] < sum(won.values()), won
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quantizers and all(initializers[n.input[1]].size == 1 for n in quantizers)
    assert all(
        initializers[n.input[2]].dtype == np.int8 and initializers[n.input[2]] == 0 for n in quantizers
    )  # symmetric
    assert OnnxModel(trt)(np.random.rand(1, 3, 64, 96).astype(np.float32)).shape == (1, 1280)


def test_int4_file_is_smaller_than_int8_and_runs(tmp_path, calib_folder):
    int8, _ = _quantize(tmp_path, "int8", "cpu", calib_folder)
    int4, path = _quantize(tmp_path, "int4")
    assert int4["bytes"] < int8["bytes"]
    model = onnx.load(str(path))
    assert any(i.data_type == onnx.TensorProto.INT4 for i in model.graph.initializer)
    out = OnnxModel(path)(np.random.rand(1, 3, 64, 96).astype(np.float32))
    assert out.shape == (1, 1280) and abs(np.linalg.norm(out) - 1) < 1e-4


def test_an_fp16_file_holds_half_weights_and_keeps_the_descriptors(tmp_path):
    """fp16: every float weight stored as float16 (about half the fp32 file), inputs and
    outputs still float32, descriptors within fp16 rounding of fp32 on images."""
    fp32, fp32_path = _quantize(tmp_path, "fp32")
    fp16, fp16_path = _quantize(tmp_path, "fp16")
    model = onnx.load(str(fp16_path))
    weights = [i for i in model.graph.initializer if len(i.dims) >= 2]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert 0.45 < fp16["bytes"] / fp32["bytes"] < 0.6
    images = np.random.default_rng(0).random((4, 3, 64, 96), dtype=np.float32)
    full, half = OnnxModel(fp32_path)(images), OnnxModel(fp16_path)(images)
    cosine = np.sum(full * half, axis=1) / np.linalg.norm(full, axis=1) / np.linalg.norm(half, axis=1)
    assert half.dtype == np.float32 and cosine.min() > 0.999 and not np.array_equal(full, half)


def test_keep_float_leaves_the_most_sensitive_layers_in_float(tmp_path, calib_folder):
    config = load_config(
        overrides={"model": {"backbone": "squeezenet", "aggregator": "gem"}, "data": {"size": (64, 96)}}
    )
    out = tmp_path / "kept.onnx"
    report = quantize_model(config, QuantizeConfig("int8", "cpu", "minmax", calib_folder, 6, keep_float=3), str(out))
    model = onnx.load(str(out))
    kept = get_metadata(model)["kept_float"]
    assert [k["layer"] for k in kept] == report["kept_float"] and len(kept) == 3
    assert kept[0]["error"] >= kept[1]["error"] >= kept[2]["error"] and kept[0]["error"] > 0
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Conv") == 3 and ops.count("QLinearConv") >= 20
    assert OnnxModel(out)(np.random.rand(1, 3, 64, 96).astype(np.float32)).shape == (1, 512)
    with pytest.raises(ConfigError, match="--keep-float applies to --precision int8"):
        quantize_model(config, QuantizeConfig("fp16", keep_float=1), str(tmp_path / "fp16.onnx"))


def test_the_layer_report_names_a_deliberately_broken_layer(tmp_path, calib_folder):
    """One convolution of a ResNet-18 gets an outlier weight in every output channel: its
    per-channel int8 scales then flatten the rest of its weights to zero. --report-layers ranks
    every layer by the descriptor error its int8 form alone causes; that layer comes first."""
    from edgevpr.compat import torchvision

    state = torchvision.models.resnet18().state_dict()
    broken = state["layer2.1.conv1.weight"]
    broken[:, 0, 0, 0] = 60 * broken.abs().max()
    torch.save(state, tmp_path / "broken.pth")
    config = load_config(
        overrides={
            "model": {"backbone": "resnet18_conv4", "aggregator": "gem", "weights": str(tmp_path / "broken.pth")},
            "data": {"size": (64, 96)},
        }
    )
    options = QuantizeConfig("int8", "cpu", "minmax", calib_folder, 6, report_layers=True)
    report = quantize_model(config, options, str(tmp_path / "r.onnx"))
    errors = report["layer_errors"]
    assert errors[0]["layer"] == "backbone.body.5.1.conv1" and errors[0]["error"] > 3 * errors[1]["error"]
    assert len(errors) == 15 and [e["error"] for e in errors] == sorted((e["error"] for e in errors), reverse=True)
    assert get_metadata(onnx.load(str(tmp_path / "r.onnx")))["layer_errors"] == errors


@needs(MOBILENET_TFLITE)
@needs(GARDENS_POINT)
@pytest.mark.parametrize("layout", int8_layout_params())
def test_int8_descriptors_stay_close_to_fp32_on_real_images(tmp_path, layout):
    """u8s8 and u8s7 on every CPU whose kernels sum them exactly; where u8s8 saturates (AVX2,
    lowest cosine 0.948 measured), only u8s7 is held to 0.95."""
    weights = dict(weights=str(MOBILENET_TFLITE))  # the known file brings TF-SAME padding and mean = std = 0.5
    _, path = _quantize(
        tmp_path, "int8", "cpu", str(GARDENS_POINT / "day_left"), size=(180, 320), int8_layout=layout, **weights
    )
    fp32 = build_model(ModelConfig(backbone="mobilenetv2", aggregator="gem", **weights))
    from edgevpr.data.images import load_rgb
    from edgevpr.models.resolve import contract_of

    preprocess = contract_of(load_config(overrides={"model": weights, "data": {"size": (180, 320)}}))
    images = torch.stack(
        [
            preprocess(load_rgb(GARDENS_POINT / folder / f"Image{i:03d}.jpg"))
            for folder in ("day_right", "night_right")
            for i in (10, 90, 170)
        ]
    )
    with torch.no_grad():
        reference = fp32(images).numpy()
    quantized = OnnxModel(path)(images)
    cosines = np.sum(reference * quantized, axis=1)
    assert (cosines >= (0.95 if int8_exact(layout) else 0.9)).all()


def test_bad_inputs_are_one_line_and_leave_no_file(tmp_path, calib_folder):
    with pytest.raises(ConfigError, match="nowhere: calibration folder not found"):
        _quantize(tmp_path, "int8", "cpu", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="int8 needs calibration images"):
        _quantize(tmp_path, "int8", "cpu", None)
    write_image(tmp_path / "calib" / "3_odd.jpg", 9, size=(80, 80))
    with pytest.raises(ConfigError, match=r"3_odd\.jpg: calibration image is 80x80") as caught:
        _quantize(tmp_path, "int8", "cpu", calib_folder, size=None, backbone="squeezenet", aggregator="rmac")
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))


class _Unexportable(nn.Module):
    out_channels = 3

    def forward(self, x):
        return torch.linalg.svd(x).S.unsqueeze(-1)


def test_unsupported_operator_is_a_clear_error(tmp_path, monkeypatch):
    from edgevpr.models.registry import BACKBONES

    monkeypatch.setitem(BACKBONES._entries, "unexportable", lambda config: _Unexportable())
    with pytest.raises(EdgeVPRError, match="cannot export the model to ONNX") as caught:
        _quantize(tmp_path, "fp32", backbone="unexportable", size=(8, 8))
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.iterdir())


def test_eval_runs_a_qdq_file_unfused_and_names_that_runtime(tmp_path, tiny_street):
    """The fused and unfused runs agree to 0.99 where the symmetric QDQ file's sums are exact;
    on AVX2 ONNX Runtime fuses it into uint8 x int8 kernels whose pairs clip (0.984 measured)."""
    from click.testing import CliRunner

    from edgevpr.cli import main
    from edgevpr.runtime.cpu import cpu_kernels
    from edgevpr.runtime.int8_layout import TENSORRT

    calib = str(tiny_street / "database")
    _, path = _quantize(tmp_path, "int8", "tensorrt", calib, size=(72, 96), backbone="squeezenet")
    results = {}
    for level in ("all", "none"):
        out, descriptors = tmp_path / f"{level}.json", tmp_path / level
        result = CliRunner().invoke(
            main,
            [
                "eval",
                "--onnx",
                str(path),
                "--dataset",
                str(tiny_street),
                "--ort-optimization",
                level,
                "--latency-runs",
                "20",
                "--out",
                str(out),
                "--save-descriptors",
                str(descriptors),
            ],
        )
        assert result.exit_code == 0, result.output
        results[level] = (json.loads(out.read_text())["protocol"], np.load(descriptors / "queries.npy"))
    assert results["all"][0]["runtime"] == "onnxruntime" and results["none"][0]["runtime"] == "onnxruntime-none"
    assert (results["all"][1] * results["none"][1]).sum(1).min() > (0.99 if TENSORRT.exact_on(cpu_kernels()) else 0.95)
    session = OnnxModel(path, optimization="none").session
    assert session.get_session_options().graph_optimization_level.name == "ORT_DISABLE_ALL"
    with pytest.raises(ConfigError, match="unknown ONNX Runtime optimization 'fast'"):
        OnnxModel(path, optimization="fast")


def test_int4_gptq_levels_keep_the_calibration_descriptors_closer_than_nearest(tmp_path, calib_folder):
    from edgevpr.models.resolve import contract_of
    from edgevpr.quantize.calibration_images import CalibrationImages

    config = load_config(
        overrides={"model": {"backbone": "squeezenet", "aggregator": "gem"}, "data": {"size": (64, 96)}}
    )
    images = np.concatenate(list(CalibrationImages(calib_folder, 6, contract_of(config), config.data.max_pixels)()))
    outputs, levels = {}, {}
    for precision, rounding in (("fp32", "nearest"), ("int4", "nearest"), ("int4", "gptq")):
        out = tmp_path / f"{precision}-{rounding}.onnx"
        quantize_model(
            load_config(overrides=config.to_dict()),
            QuantizeConfig(precision, calib=calib_folder, calib_count=6, bias_correction=False, int4_rounding=rounding),
            str(out),
        )
        model = onnx.load(str(out))
        if precision == "int4":
            assert get_metadata(model)["int4_rounding"] == rounding
        levels[rounding] = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_int4")]
        outputs[precision, rounding] = OnnxModel(str(out))(images)
    assert len(levels["gptq"]) == len(levels["nearest"]) > 0
    assert any((a != b).mean() > 0.05 for a, b in zip(levels["gptq"], levels["nearest"]))

    def error(rounding):
        return float(np.mean(np.sum((outputs["int4", rounding] - outputs["fp32", "nearest"]) ** 2, axis=1)))

    assert error("gptq") < 0.8 * error("nearest"), (error("gptq"), error("nearest"))
    with pytest.raises(ConfigError, match="int4 rounding"):
        quantize_model(config, QuantizeConfig("int4", int4_rounding="best"), str(tmp_path / "bad.onnx"))
    assert not (tmp_path / "bad.onnx").exists()


def test_a_checkpoint_is_quantized_under_the_contract_it_stores(tmp_path, tiny_street):
    """A checkpoint trained under mean = std = 0.5 and TF-SAME padding: calibration and the
    file's contract are the checkpoint's, not the defaults (the file's fp32 descriptors of a
    real image equal the checkpoint's own)."""
    from PIL import Image

    from edgevpr.contract import InputContract
    from edgevpr.maps.model_file import save_torch_model
    from edgevpr.models.describer import Describer

    config = load_config(overrides={"model": {"backbone": "squeezenet", "aggregator": "gem"}})
    contract = InputContract(None, (64, 80), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None, "symmetric", "bicubic")
    checkpoint = tmp_path / "trained.pt"
    save_torch_model(build_model(config.model).eval(), config.to_dict(), contract, checkpoint)
    deployed = load_config(overrides={"model": {"checkpoint": str(checkpoint)}})
    out = tmp_path / "m.onnx"
    quantize_model(deployed, QuantizeConfig("fp32"), str(out))
    file = Describer.onnx(out)
    assert file.contract == contract
    image = Image.open(sorted((tiny_street / "queries").iterdir())[0]).convert("RGB")
    own = Describer.checkpoint(checkpoint)
    assert np.allclose(file.describe(file.contract(image)[None]), own.describe(own.contract(image)[None]), atol=1e-4)
