"""Mixed precision: budget feasibility, the genetic search (resumable), simulated against
deployed quantization, and the CLI from search to ONNX."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.errors import ConfigError
from edgevpr.quantize.activation_grid import activation_grid, quantize_levels
from edgevpr.quantize.layers import quantized_weight
from edgevpr.research.genetic import (
    Problem,
    SearchSettings,
    genetic_search,
    greedy_by_sensitivity,
    random_search,
    warm_start_candidates,
)
from edgevpr.research.simulate import BITS, PRECISIONS
from edgevpr.runtime.int8_layout import LAYOUTS
from tests.conftest import int8_exact, int8_layout_params


def fake_activation(x, low, high):
    """Quantize-dequantize as the simulated int8 layers do: ONNX Runtime's uint8 QuantizeLinear."""
    grid = activation_grid(low, high)
    return quantize_levels(x, grid) * np.float32(grid[0])


def _toy(layers=24, seed=0, budget=6.0, weighting="plain"):
    rng = np.random.default_rng(seed)
    sensitivity = {"int4": list(rng.random(layers) ** 3), "int8": list(rng.random(layers) * 0.05)}
    problem = Problem(list(rng.integers(10, 5000, layers)), sensitivity, budget, weighting)
    coupling = rng.random((layers, layers)) * 0.02

    def fitness(assignment):
        errors = np.array([sensitivity[p][i] if p != "fp16" else 0.0 for i, p in enumerate(assignment)])
        return -float(errors.sum() + errors @ coupling @ errors)

    return problem, fitness


@pytest.mark.parametrize("weighting", ["plain", "params"])
@pytest.mark.parametrize("budget", [4.0, 5.0, 6.5, 8.0, 12.0])
def test_budget_holds_after_crossover_mutation_and_repair(budget, weighting):
    problem, _ = _toy(budget=budget, weighting=weighting)
    rng = np.random.default_rng(1)
    for _ in range(200):
        a, b = problem.random_feasible(rng), problem.random_feasible(rng)
        assert problem.feasible(a) and problem.feasible(b)
        child = problem.repair(problem.mutate(problem.crossover(a, b, rng), 1.0, rng), rng)
        assert problem.feasible(child) and len(child) == problem.size
    assert problem.feasible(greedy_by_sensitivity(problem))


def test_infeasible_budget_is_an_error():
    with pytest.raises(ConfigError, match="below int4"):
        _toy(budget=3.5)


def test_crossover_takes_sections_of_both_parents():
    problem, _ = _toy(layers=10)
    child = problem.crossover(["int4"] * 10, ["fp16"] * 10, np.random.default_rng(0))
    assert set(child) == {"int4", "fp16"} and child[0] == "int4"
    changes = sum(a != b for a, b in zip(child, child[1:]))
    assert 1 <= changes <= 2  # two cut points at most


def test_genetic_search_beats_random_search_at_equal_evaluations():
    wins = []
    for seed in range(3):
        problem, fitness = _toy(layers=40, seed=seed)
        _, best, state = genetic_search(problem, fitness, SearchSettings(6.0, steps=150, seed=seed, warm_start=False))
        _, random_best, _ = random_search(problem, fitness, state.evaluations, seed)
        wins.append(best - random_best)
    assert np.mean(wins) > 0


@pytest.mark.parametrize("budget", [6.0, 8.0])
def test_warm_start_is_never_worse_than_its_candidates(budget):
    problem, fitness = _toy(layers=30, budget=budget)
    starts = warm_start_candidates(problem)
    assert starts[0] == greedy_by_sensitivity(problem) and (["int8"] * 30 in starts) == (budget >= 8)
    assert all(problem.feasible(start) for start in starts)
    best, best_fitness, state = genetic_search(problem, fitness, SearchSettings(budget, steps=30, seed=1))
    assert problem.feasible(best) and best_fitness >= max(fitness(start) for start in starts)
    initial = genetic_search(problem, fitness, SearchSettings(budget, steps=0, seed=1))[2].population
    cold = genetic_search(problem, fitness, SearchSettings(budget, steps=0, seed=1, warm_start=False))[2].population
    assert [a for a, _ in initial[: len(starts)]] == starts and not any(a in starts for a, _ in cold)
    _, random_best, _ = random_search(problem, fitness, 5, seed=1, warm_start=True)
    assert random_best >= max(fitness(start) for start in starts)


@pytest.mark.parametrize("weighting", ["plain", "params"])
def test_fill_spends_unused_bits_within_the_budget(weighting):
    problem, fitness = _toy(budget=7.0, weighting=weighting)
    rng = np.random.default_rng(2)
    for _ in range(50):
        candidate = problem.random_feasible(rng)
        filled = problem.fill(candidate)
        assert problem.feasible(filled) and fitness(filled) >= fitness(candidate)
        assert all(BITS[a] >= BITS[b] for a, b in zip(filled, candidate))  # it only raises
        for i, precision in enumerate(filled):  # nothing useful is left to raise
            if precision != "fp16":
                raised = filled[:i] + [PRECISIONS[PRECISIONS.index(precision) + 1]] + filled[i + 1 :]
                assert (
                    not problem.feasible(raised)
                    or problem.sensitivity[precision][i]
                    <= (problem.sensitivity.get(raised[i], [0.0] * problem.size)[i])
                )
    assert problem.average_bits(problem.fill(["int4"] * problem.size)) > 6.0


def test_resumed_search_equals_an_uninterrupted_one(tmp_path):
    problem, fitness = _toy()
    settings = SearchSettings(6.0, steps=40, seed=3)
    expected = genetic_search(problem, fitness, settings)

    class Killed(Exception):
        pass

    def die_at_step_25(state):
        if state.step == 25:
            raise Killed

    state_file = tmp_path / "search.state.json"
    with pytest.raises(Killed):
        genetic_search(problem, fitness, settings, state_file, die_at_step_25)
    assert json.loads(state_file.read_text())["state"]["step"] == 20  # saved every 10 steps
    resumed = genetic_search(problem, fitness, settings, state_file)
    assert resumed[0] == expected[0] and resumed[1] == expected[1]
    assert resumed[2].history == expected[2].history and resumed[2].evaluations == expected[2].evaluations
    with pytest.raises(ConfigError, match="other settings"):
        genetic_search(problem, fitness, SearchSettings(6.0, steps=41, seed=3), state_file)
    with pytest.raises(ConfigError, match="another model, calibration or simulation"):
        genetic_search(problem, fitness, settings, state_file, fingerprint="gptq int4 levels")


def test_time_limit_counts_the_runs_before_a_resume(tmp_path):
    problem, fitness = _toy()
    settings = SearchSettings(6.0, steps=40, seed=3, time_limit_s=600.0)
    state_file = tmp_path / "search.state.json"
    genetic_search(problem, fitness, SearchSettings(6.0, steps=10, seed=3, time_limit_s=600.0), state_file)
    saved = json.loads(state_file.read_text())
    assert saved["state"]["step"] == 10 and 0 < saved["state"]["seconds"] < 600
    saved["settings"]["steps"], saved["state"]["seconds"] = 40, 601.0  # as if the first run had taken 10 minutes
    state_file.write_text(json.dumps(saved))
    _, _, state = genetic_search(problem, fitness, settings, state_file)
    assert state.step == 10 and state.seconds >= 601.0


def test_simulated_weights_and_activations():
    weight = torch.tensor([[0.5, -0.25, 0.1], [1.0, 0.3, -0.7]])
    int4 = quantized_weight(weight, "int4")
    assert torch.allclose(int4[1], torch.round(weight[1] / (1 / 7)) * (1 / 7))
    assert torch.equal(quantized_weight(weight, "fp16"), weight.half().float())
    x = torch.linspace(-1, 3, 101)
    q = fake_activation(x, -1.0, 3.0)
    assert (q - x).abs().max() <= 4 / 255 / 2 + 1e-6
    assert len(torch.unique(fake_activation(torch.linspace(0, 10, 1000), 0.0, 6.0))) <= 256
    assert fake_activation(torch.tensor([10.0]), 0.0, 6.0).item() == pytest.approx(6.0, abs=0.03)


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.slow
def test_simulated_int8_matches_deployed_int8_and_mixed_deploys(tmp_path, tiny_street):
    import onnx

    from edgevpr.config import QuantizeConfig, load_config
    from edgevpr.quantize.onnx_export import get_metadata
    from edgevpr.quantize.pipeline import quantize_model
    from edgevpr.research.mixed import MixedOptions, build_simulator
    from edgevpr.runtime.onnx_model import OnnxModel

    model = {"backbone": "squeezenet", "aggregator": "gem"}
    calib = str(tiny_street / "database")
    config = load_config(overrides={"model": model, "data": {"size": (72, 96)}, "eval": {"threads": 1}})
    simulator, _ = build_simulator(
        config,
        MixedOptions(SearchSettings(8.0), calib=calib, calib_count=12, bias_correction=True, int4_rounding="gptq"),
    )
    images = simulator.images.numpy()

    int8_file = tmp_path / "int8.onnx"
    quantize_model(config, QuantizeConfig(precision="int8", calib=calib, calib_count=12), str(int8_file))
    deployed = OnnxModel(str(int8_file), threads=1)(images)
    simulator.set(["int8"] * len(simulator.layers))
    simulated = simulator.descriptors()
    simulator.set(None)
    cosine_sim_deployed = (simulated * deployed).sum(1)
    cosine_sim_fp32 = (simulated * simulator.reference).sum(1)
    assert cosine_sim_deployed.mean() > 0.99, cosine_sim_deployed
    assert cosine_sim_fp32.mean() > 0.99

    out = tmp_path / "mixed.json"
    result = _cli(
        "search-precision",
        "--backbone",
        "squeezenet",
        "--aggregator",
        "gem",
        "--size",
        "72x96",
        "--budget",
        6,
        "--calib",
        calib,
        "--calib-count",
        12,
        "--population",
        6,
        "--sample",
        3,
        "--steps",
        10,
        "--bias-correction",
        "--int4-rounding",
        "gptq",
        "--threads",
        1,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    found = json.loads(out.read_text())
    assert found["average_bits"] <= 6 and len(found["layers"]) == len(simulator.layers)
    assert set(found["baselines"]) == {"random_search", "greedy_by_sensitivity", "uniform_int8", "uniform_int4"}
    for suffix in (".sensitivity.json", ".sensitivity.png", ".bits.png", ".state.json"):
        assert (tmp_path / f"mixed{suffix}").is_file()

    mixed_file = tmp_path / "mixed.onnx"
    result = _cli(
        "quantize",
        "--backbone",
        "squeezenet",
        "--aggregator",
        "gem",
        "--size",
        "72x96",
        "--precision",
        "mixed",
        "--mixed-config",
        out,
        "--calib",
        calib,
        "--calib-count",
        12,
        "--threads",
        1,
        "--out",
        mixed_file,
    )
    assert result.exit_code == 0, result.output
    mixed_descriptors = OnnxModel(str(mixed_file), threads=1)(images)
    int4_layers = sum(layer["precision"] == "int4" for layer in found["layers"])
    assert found["bias_correction"] and int4_layers > 0
    metadata = get_metadata(onnx.load(str(mixed_file)))
    assert metadata["int4_bias_correction"]["layers"] == int4_layers
    assert found["int4_rounding"] == metadata["int4_rounding"] == "gptq"
    stored = _stored_int4(onnx.load(str(mixed_file)))  # the levels the search simulated, GPTQ on the same images
    assert len(stored) == int4_layers
    for layer, precision in zip(simulator.layers, [layer["precision"] for layer in found["layers"]]):
        if precision == "int4":
            simulated = simulator.variants[(layer.name, "int4")].numpy()
            assert any(w.shape == simulated.shape and np.array_equal(w, simulated) for w in stored), layer.name
    simulator.set([layer["precision"] for layer in found["layers"]])
    expected = simulator.descriptors()
    # the simulation quantizes the tensors the QDQ graph quantizes, with the same ranges
    assert (mixed_descriptors * expected).sum(1).min() > 0.9995
    fp32_bytes = sum(p.numel() * 4 for p in simulator.model.parameters())
    assert mixed_file.stat().st_size < fp32_bytes * 6 / 32 * 1.5


class _Residual(torch.nn.Module):
    """conv -> (1x1 conv -> ReLU6 -> 1x1 conv) + residual -> 1x1 conv: the MobileNetV2 pattern."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.expand = torch.nn.Conv2d(8, 16, 1)
        self.project = torch.nn.Conv2d(16, 8, 1)
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(x + self.project(torch.nn.functional.relu6(self.expand(x)))).flatten(1)


def _deployed_residual(tmp_path, precisions, gptq=False, layout="u8s7"):
    import onnx

    from edgevpr.quantize import calibration
    from edgevpr.quantize.gptq import gptq_int4_layers
    from edgevpr.quantize.layers import node_of_layer, searchable_layers
    from edgevpr.quantize.onnx_export import export_onnx
    from edgevpr.research.mixed_export import int8_tensors, quantized_graph, to_mixed
    from edgevpr.research.simulate import Simulator

    torch.manual_seed(0)
    model = _Residual().eval()
    with torch.no_grad():
        model.expand.bias -= 1.0  # a long negative tail that the ReLU6 removes
    images = torch.randn(24, 3, 32, 32)
    proto = export_onnx(model, images[:1], {})
    stats = calibration.collect(proto, lambda: (images[i : i + 1].numpy() for i in range(len(images))))
    ranges = calibration.ranges(stats, "minmax", symmetric=False)
    layers = searchable_layers(model, images[:1])
    nodes = node_of_layer(proto, layers)
    points = int8_tensors(proto, nodes)
    assert points["expand"][2] is not None and points["stem"][2] is None  # the ReLU6 is fused into expand
    int4 = (
        gptq_int4_layers(
            model, {layer.name: layer.module for layer, p in zip(layers, precisions) if p == "int4"}, images
        )
        if gptq
        else None
    )
    weight_max = LAYOUTS[layout].weight_max
    simulator = Simulator(model, layers, quantized_graph(proto, nodes, ranges, weight_max), images, int4=int4)
    mixed = {"layers": [{"name": layer.name, "precision": p} for layer, p in zip(layers, precisions)], "path": "test"}
    deployed, bits = to_mixed(proto, model, images[:1], mixed, ranges, int4, LAYOUTS[layout])
    assert bits == [{"int4": 4, "int8": 8, "fp16": 16}[p] for p in precisions]
    assert ("Clip" in {node.op_type for node in deployed.graph.node}) == (precisions[1] != "int8")  # fused into int8
    onnx.save(deployed, tmp_path / "mixed.onnx")
    simulator.set(precisions)
    return simulator, deployed, proto, nodes, images, tmp_path / "mixed.onnx"


@pytest.mark.parametrize("layout", int8_layout_params())
def test_simulation_computes_what_the_deployed_integer_kernels_compute(tmp_path, layout):
    import onnx

    from edgevpr.runtime.onnx_model import OnnxModel

    simulator, deployed, proto, nodes, images, path = _deployed_residual(tmp_path, ["int8"] * 4, layout=layout)
    fused = OnnxModel(str(path), threads=1)(images.numpy())
    unfused = OnnxModel(str(path), threads=1, optimization="none")(images.numpy())
    simulated = simulator.descriptors()
    if int8_exact(layout):  # QLinearConv and QLinearAdd, bit for bit
        np.testing.assert_allclose(fused, simulated, rtol=0, atol=1e-6)
    else:  # saturating u8 x s8 pairs: the simulation sums exactly, the kernels do not
        assert (fused * simulated).sum(1).mean() > 0.99
    assert np.mean(np.abs(unfused - simulated) > 1e-4) < 0.05  # dequantize-operator-quantize: rounding ties apart
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in deployed.graph.initializer}
    for layer in simulator.layers:  # the int8 bias levels are the int32 levels the quantizer stored
        bias = next(node for node in proto.graph.node if node.name == nodes[layer.name]).input[2]
        np.testing.assert_array_equal(simulator.int8[layer.name].bias.numpy(), stored[f"{bias}_quantized"])
    simulator.set(None)
    assert np.mean(np.abs(fused - simulator.descriptors()) > 1e-4) > 0.5
    assert torch.equal(simulator.images, images.contiguous(memory_format=torch.channels_last))  # not quantized in place


def _stored_int4(proto) -> list[np.ndarray]:
    """The float weights each int4 DequantizeLinear of the file produces."""
    import onnx

    stored = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    return [
        stored[node.input[0]].astype(np.float32) * stored[node.input[1]].reshape(-1, 1, 1, 1)
        for node in proto.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0].endswith("_int4")
    ]


@pytest.mark.parametrize("layout", int8_layout_params())
def test_deployed_int4_layers_hold_the_simulated_gptq_levels(tmp_path, layout):
    from edgevpr.quantize.layers import quantized_weight
    from edgevpr.runtime.onnx_model import OnnxModel

    precisions = ["int8", "int4", "int4", "int8"]
    simulator, deployed, _, _, images, path = _deployed_residual(tmp_path, precisions, gptq=True, layout=layout)
    stored = _stored_int4(deployed)
    assert len(stored) == 2
    for layer, weights in zip([simulator.layers[1], simulator.layers[2]], stored):
        simulated = simulator.variants[(layer.name, "int4")].numpy()
        np.testing.assert_array_equal(weights, simulated)
        assert not np.array_equal(simulated, quantized_weight(simulator.original[layer.name], "int4").numpy())
    simulated = simulator.descriptors()
    deployed_descriptors = OnnxModel(str(path), threads=1)(images.numpy())
    if int8_exact(layout):
        assert np.mean(np.abs(deployed_descriptors - simulated) > 1e-4) < 0.02  # float summation order: rare ties apart
    else:
        assert (deployed_descriptors * simulated).sum(1).mean() > 0.99
    simulator.set(None)
    assert np.mean(np.abs(deployed_descriptors - simulator.descriptors()) > 1e-4) > 0.5


@pytest.mark.parametrize("layout", int8_layout_params())
def test_float_layers_between_quantized_tensors_stay_float(tmp_path, layout):
    """expand in fp16 reads a dequantized tensor and feeds a quantized one: ONNX Runtime's
    WeightBiasQuantization would run it as int8; OnnxModel keeps it float, as simulated."""
    import onnx
    import onnxruntime as ort

    from edgevpr.runtime.onnx_model import KEEP_FLOAT_WEIGHTS, OnnxModel

    simulator, _, _, _, images, path = _deployed_residual(tmp_path, ["int8", "fp16", "int8", "int8"], layout=layout)
    simulated = simulator.descriptors()
    deployed = OnnxModel(str(path), threads=1)(images.numpy())
    if int8_exact(layout):
        assert np.mean(np.abs(deployed - simulated) > 1e-4) < 0.01  # float summation order: rare ties apart
    else:
        assert (deployed * simulated).sum(1).mean() > 0.99

    def integer_convolutions(**kwargs):  # in the graph ONNX Runtime runs
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], **kwargs)
        return sum(node.op_type == "QLinearConv" for node in onnx.load(options.optimized_model_filepath).graph.node)

    assert integer_convolutions(disabled_optimizers=KEEP_FLOAT_WEIGHTS) == 3
    assert integer_convolutions() == 4  # what any other ONNX Runtime session makes of the file


def test_quantized_addition_rounds_as_qlinear_add():
    """Every pair of uint8 levels through ONNX Runtime's QLinearAdd, against ``qlinear_add`` and
    against the dequantize-add-quantize arithmetic of the unfused graph."""
    import platform

    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgevpr.research.int8_arithmetic import qlinear_add

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the fused multiply-add order is that of MLAS's x86 build")
    grids = [(0.1776590645313263, 128.0), (0.11578511446714401, 128.0), (0.17676907777786255, 128.0)]
    names = ["a_scale", "a_zero", "b_scale", "b_zero", "c_scale", "c_zero"]
    constants = [
        numpy_helper.from_array(np.array(v, dtype=np.float32 if k.endswith("scale") else np.uint8), k)
        for k, v in zip(names, [x for grid in grids for x in grid])
    ]
    node = helper.make_node("QLinearAdd", ["a", *names[:2], "b", *names[2:]], ["c"], domain="com.microsoft")
    graph = helper.make_graph(
        [node],
        "add",
        [helper.make_tensor_value_info(n, TensorProto.UINT8, [256, 256]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.UINT8, [256, 256])],
        constants,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    a, b = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"a": a, "b": b})[0].astype(np.float32)

    def dequantized(levels, grid):
        return torch.from_numpy((levels.astype(np.float32) - grid[1]) * np.float32(grid[0]))

    (s_a, _), (s_b, _), (s_c, z_c) = grids
    ours = qlinear_add(dequantized(a, grids[0]), grids[0], dequantized(b, grids[1]), grids[1], grids[2])
    np.testing.assert_array_equal(torch.round(ours / np.float32(s_c)).numpy() + z_c, expected)
    unfused = torch.clamp(
        torch.round((dequantized(a, grids[0]) + dequantized(b, grids[1])) / np.float32(s_c)) + z_c, 0, 255
    )
    assert (unfused.numpy() != expected).sum() > 0
