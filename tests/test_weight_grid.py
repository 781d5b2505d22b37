import numpy as np
import onnx
import torch

from edgevpr.quantize.onnx_export import export_onnx
from edgevpr.quantize.ptq import to_int8
from edgevpr.quantize.weight_grid import grid_overrides, grid_step


def test_grid_step_found_only_where_there_is_one():
    rng = np.random.default_rng(0)
    on_grid = rng.integers(-100, 101, size=(8, 4, 3, 3)) * 0.0137
    assert abs(grid_step(on_grid) - 0.0137) < 1e-9
    assert grid_step(rng.integers(-50, 51, size=(8, 4)) * 2 * 0.01) is not None
    assert grid_step(rng.normal(size=(8, 4, 3, 3))) is None


class _Net(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, bias=True)
        self.conv.weight.data = torch.from_numpy(weight)

    def forward(self, x):
        return torch.relu(self.conv(x))


def test_int8_keeps_weights_on_their_grid_exactly():
    rng = np.random.default_rng(1)
    step = 0.0213
    multiples = rng.integers(-90, 91, size=(4, 3, 3, 3))
    multiples[0, 0, 0, 0] = 127  # channel 0 spans the full int8 range at this step
    multiples[1, 0, 0, 0] = 200  # channel 1 does not fit: it keeps max|w| / 127
    weight = (multiples * step).astype(np.float32)
    proto = export_onnx(_Net(weight).eval(), torch.zeros(1, 3, 8, 8), {})
    overrides = grid_overrides(proto)
    (scales,) = overrides.values()
    assert [round(float(c["scale"]), 6) for c in scales] == [step, round(200 * step / 127, 6), step, step]

    ranges = {name: (0.0, 5.0) for name in ["images"] + [o for n in proto.graph.node for o in n.output]}
    ranges["images"] = (-1.0, 1.0)
    quantized = onnx.load_from_string(to_int8(proto, ranges, "cpu").SerializeToString())
    tensors = {i.name: onnx.numpy_helper.to_array(i) for i in quantized.graph.initializer}
    conv = next(n for n in quantized.graph.node if n.op_type == "QLinearConv")
    q, w_scale = tensors[conv.input[3]].astype(np.float64), tensors[conv.input[4]].astype(np.float64)
    exact = [0, 2, 3]
    assert (q[exact] == multiples[exact]).all()  # the int8 values are the grid multiples themselves
    assert np.allclose(w_scale[exact], step, rtol=1e-5)  # the step as read from float32 weights
