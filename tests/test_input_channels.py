import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgevpr.config import QuantizeConfig, load_config
from edgevpr.quantize import precisions
from edgevpr.quantize.input_channels import widen_input_conv
from edgevpr.quantize.onnx_export import get_metadata
from edgevpr.quantize.pipeline import quantize_model
from edgevpr.runtime.onnx_model import OnnxModel
from tests.conftest import int8_exact, int8_layout_params, write_image


def _stem(model: onnx.ModelProto):
    """The QLinearConv fed by the image, through a Pad or not, and its int8 weight."""
    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "QLinearConv":
            continue
        source = producers[node.input[0]]
        chain = [source.op_type]
        if source.op_type == "Pad":
            chain.append(producers[source.input[0]].op_type)
            source = producers[source.input[0]]
        if source.input[0] == model.graph.input[0].name:
            return chain, initializers[node.input[3]]
    raise AssertionError("no QLinearConv reads the image")


@pytest.mark.slow
@pytest.mark.parametrize("layout", int8_layout_params(("u8s8", "u8s7", "s8s8")))
def test_cpu_int8_stem_widened_to_four_channels_gives_identical_descriptors(tmp_path, monkeypatch, layout):
    """Identical where the layout's sums are exact on this CPU; where u8 x s8 pairs saturate,
    a fourth channel regroups the stem's pairs, so the sums clip elsewhere: close only."""
    for i in range(4):
        write_image(tmp_path / "calib" / f"{i}.jpg", i, size=(96, 64))
    config = load_config(
        overrides={"model": {"backbone": "mobilenetv2", "aggregator": "gem"}, "data": {"size": (64, 96)}}
    )
    options = QuantizeConfig("int8", "cpu", "minmax", str(tmp_path / "calib"), 4, int8_layout=layout)
    quantize_model(config, options, str(tmp_path / "widened.onnx"))
    monkeypatch.setattr(precisions, "widen_input_conv", lambda proto: False)
    quantize_model(config, options, str(tmp_path / "plain.onnx"))

    widened, plain = onnx.load(str(tmp_path / "widened.onnx")), onnx.load(str(tmp_path / "plain.onnx"))
    assert get_metadata(widened)["stem_channels_widened"] is True
    chain, weight = _stem(widened)
    assert chain == ["Pad", "QuantizeLinear"] and weight.shape[1] == 4 and not weight[:, 3].any()
    chain, weight = _stem(plain)
    assert chain == ["QuantizeLinear"] and weight.shape[1] == 3

    images = np.random.default_rng(0).random((2, 3, 64, 96), dtype=np.float32)
    expected = OnnxModel(tmp_path / "plain.onnx")(images)

    def check(path):
        got = OnnxModel(path)(images)
        if int8_exact(layout):
            np.testing.assert_array_equal(got, expected)
        else:
            assert (got * expected).sum(1).min() > 0.9

    check(tmp_path / "widened.onnx")
    assert widen_input_conv(plain) and not widen_input_conv(plain)  # once only
    onnx.save(plain, str(tmp_path / "rewritten.onnx"))
    check(tmp_path / "rewritten.onnx")
