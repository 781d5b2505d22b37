"""int8 on every x86 CPU: the kernel family is read from the CPU, each layout's arithmetic is
checked against what that family computes, and a file that saturates here says so.

Expectations by kernel family (``edgevpr.runtime.cpu``): VNNI and ARM sum uint8 x int8
products exactly; AVX2 and AVX-512 without VNNI add each pair of products into a saturating
int16. ``u8s7`` (weights in [-64, 64]) and ``s8s8`` are exact on both kinds; ``u8s8`` only on
the first. The parametrized ids name the expectation that ran on this machine."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevpr.config import QuantizeConfig, load_config
from edgevpr.errors import ConfigError
from edgevpr.quantize.onnx_export import get_metadata
from edgevpr.quantize.pipeline import quantize_model
from edgevpr.runtime import int8_layout
from edgevpr.runtime.cpu import CpuKernels, _family, cpu_kernels
from edgevpr.runtime.int8_layout import (
    LAYOUTS,
    TENSORRT,
    layout_of,
    resolve_layout,
    saturation_warning,
)
from edgevpr.runtime.onnx_model import OnnxModel
from tests.conftest import int8_layout_params, write_image

AVX2 = CpuKernels("x86_64", ("avx", "avx2", "fma"), "x86-avx2", "test")
VNNI = CpuKernels("x86_64", ("avx2", "avx512_vnni", "avx512bw", "avx512f"), "x86-avx512-vnni", "test")


@pytest.mark.parametrize(
    "arch, flags, family, exact",
    [
        ("x86_64", {"avx2", "fma"}, "x86-avx2", False),
        ("x86_64", {"avx2", "avx512f", "avx512bw"}, "x86-avx512", False),
        ("x86_64", {"avx2", "avx512f", "avx512bw", "avx512_vnni"}, "x86-avx512-vnni", True),
        ("x86_64", {"avx2", "avx_vnni"}, "x86-avx-vnni", True),
        ("aarch64", {"asimd", "asimddp"}, "arm64-dotprod", True),
        ("aarch64", {"asimd"}, "arm64-neon", True),
    ],
)
def test_kernel_family_from_flags(arch, flags, family, exact):
    kernels = CpuKernels(arch, tuple(sorted(flags)), _family(arch, flags), "test")
    assert kernels.family == family and kernels.u8s8_exact is exact
    assert resolve_layout("auto", kernels).name == ("u8s8" if exact else "u8s7")


def test_this_cpu_is_read_and_recorded():
    kernels = cpu_kernels()
    assert kernels.family and kernels.source in ("/proc/cpuinfo", "sysctl", "py-cpuinfo", "EDGEVPR_CPU_FLAGS")
    if kernels.arch == "x86_64":
        assert kernels.family.startswith("x86-")
        assert ("avx512_vnni" in kernels.flags) <= (
            kernels.family == "x86-avx512-vnni" or "avx512bw" not in kernels.flags
        )
    from edgevpr.evaluate.environment import environment

    env = environment()
    assert env["int8_kernels"] == kernels.family and env["cpu_flags"] == list(kernels.flags)


def test_layout_exactness_by_family():
    assert LAYOUTS["u8s8"].exact_on(VNNI) and not LAYOUTS["u8s8"].exact_on(AVX2)
    assert LAYOUTS["u8s7"].exact_on(AVX2) and LAYOUTS["s8s8"].exact_on(AVX2)
    assert not TENSORRT.exact_on(AVX2) and TENSORRT.exact_on(VNNI)
    with pytest.raises(ConfigError, match="unknown int8 layout 'u4s4'"):
        resolve_layout("u4s4")


def _one_conv(weight_level: int, channels: int = 16) -> bytes:
    """QLinearConv 1x1 over ``channels`` uint8 inputs of 255 with int8 weights all ``weight_level``:
    every pair of products is 2 x 255 x level, which saturates int16 from level 65 on."""
    exact = channels * 255 * weight_level
    inits = [
        numpy_helper.from_array(np.array(v, dtype=t), n)
        for n, v, t in [
            ("x_scale", 1.0, np.float32),
            ("x_zero", 0, np.uint8),
            ("w", np.full((1, channels, 1, 1), weight_level), np.int8),
            ("w_scale", [1.0], np.float32),
            ("w_zero", [0], np.int8),
            ("y_scale", exact / 250.0, np.float32),
            ("y_zero", 0, np.uint8),
        ]
    ]
    node = helper.make_node(
        "QLinearConv", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"], ["y"]
    )
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, channels, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 1, 4, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("layout", int8_layout_params(("u8s8", "u8s7")))
def test_onnx_runtime_sums_as_the_kernel_family_says(layout):
    """The largest sums a layout allows: exact (output 250) where the family sums exactly, else
    each pair clipped to 32767 (output 250 x 8 x 32767 / (16 x 255 x 127) = 126)."""
    import onnxruntime as ort

    session = ort.InferenceSession(_one_conv(LAYOUTS[layout].weight_max), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.full((1, 16, 4, 4), 255, np.uint8)})[0]
    kernels = cpu_kernels()
    if LAYOUTS[layout].exact_on(kernels):
        assert (out == 250).all()
    elif kernels.arch == "x86_64":
        assert (out == 126).all(), out.ravel()[:4]


def _calib(tmp_path):
    for i in range(4):
        write_image(tmp_path / "calib" / f"{i}.jpg", i, size=(96, 64))
    return str(tmp_path / "calib")


@pytest.mark.parametrize("layout", ["u8s8", "u8s7", "s8s8"])
def test_each_layout_stores_its_ranges_and_records_itself(tmp_path, layout):
    config = load_config(
        overrides={"model": {"backbone": "squeezenet", "aggregator": "gem"}, "data": {"size": (64, 96)}}
    )
    out = tmp_path / f"{layout}.onnx"
    report = quantize_model(
        config, QuantizeConfig("int8", "cpu", "minmax", _calib(tmp_path), 4, int8_layout=layout), str(out)
    )
    model = onnx.load(str(out))
    assert report["int8_layout"] == get_metadata(model)["int8_layout"] == layout
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "QLinearConv"]
    largest = max(np.abs(arrays[node.input[3]].astype(int)).max() for node in convs)
    assert largest == LAYOUTS[layout].weight_max
    activation = {arrays[node.input[2]].dtype for node in convs}
    assert activation == {np.dtype(np.int8 if layout == "s8s8" else np.uint8)}
    assert layout_of(get_metadata(model)) is LAYOUTS[layout]


def test_auto_layout_is_exact_on_the_quantizing_machine(tmp_path, monkeypatch):
    config = load_config(
        overrides={"model": {"backbone": "squeezenet", "aggregator": "gem"}, "data": {"size": (64, 96)}}
    )
    monkeypatch.setattr(int8_layout, "cpu_kernels", lambda: AVX2)
    report = quantize_model(
        config, QuantizeConfig("int8", "cpu", "minmax", _calib(tmp_path), 4), str(tmp_path / "a.onnx")
    )
    assert report["int8_layout"] == "u8s7"
    with pytest.raises(ConfigError, match="int8 layout s8s8 is for --precision int8"):
        quantize_model(
            config,
            QuantizeConfig("mixed", calib=_calib(tmp_path), mixed_config="m.json", int8_layout="s8s8"),
            str(tmp_path / "m.onnx"),
        )


def test_a_file_that_saturates_here_warns_in_one_line(tmp_path, monkeypatch, capsys):
    legacy = {"precision": "int8", "target": "cpu"}  # a file quantized before layouts were recorded
    assert layout_of(legacy) is LAYOUTS["u8s8"] and layout_of({"precision": "int4"}) is None
    assert saturation_warning("m.onnx", legacy, VNNI) is None
    assert saturation_warning("m.onnx", legacy | {"int8_layout": "u8s7"}, AVX2) is None
    line = saturation_warning("m.onnx", legacy, AVX2)
    assert "\n" not in line and line.startswith("warning: m.onnx") and "x86-avx2" in line and "u8s7" in line
    assert "--target cpu" in saturation_warning("t.onnx", {"precision": "int8", "target": "tensorrt"}, AVX2)

    config = load_config(
        overrides={"model": {"backbone": "squeezenet", "aggregator": "gem"}, "data": {"size": (64, 96)}}
    )
    out = tmp_path / "u8s8.onnx"
    quantize_model(config, QuantizeConfig("int8", "cpu", "minmax", _calib(tmp_path), 4, int8_layout="u8s8"), str(out))
    capsys.readouterr()
    monkeypatch.setattr(int8_layout, "cpu_kernels", lambda: AVX2)
    OnnxModel(out)
    assert capsys.readouterr().err.count("warning: ") == 1
    monkeypatch.setattr(int8_layout, "cpu_kernels", lambda: VNNI)
    OnnxModel(out)
    assert capsys.readouterr().err == ""


def test_an_int8_result_names_its_layout_and_kernels(tmp_path, tiny_street):
    from click.testing import CliRunner

    from edgevpr.cli import main

    path = tmp_path / "m.onnx"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "quantize",
            "--backbone",
            "squeezenet",
            "--aggregator",
            "gem",
            "--size",
            "72x96",
            "--precision",
            "int8",
            "--calib",
            str(tiny_street / "database"),
            "--calib-count",
            "4",
            "--int8-layout",
            "u8s7",
            "--out",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "int8 layout u8s7" in result.output
    out = tmp_path / "r.json"
    result = runner.invoke(
        main, ["eval", "--onnx", str(path), "--dataset", str(tiny_street), "--latency-runs", "20", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    family = cpu_kernels().family
    assert saved["protocol"]["int8_layout"] == "u8s7" and saved["protocol"]["int8_kernels"] == family
    assert saved["protocol_name"].endswith(f":int8-cpu:onnxruntime:u8s7@{family}")


def test_cpu_flags_are_read_from_what_the_os_publishes(monkeypatch):
    """No machine code is run: the flags are /proc/cpuinfo's (Linux), and an emulated CPU is
    described by EDGEVPR_CPU_FLAGS."""
    from edgevpr.runtime import cpu

    if cpu.platform.machine().lower() in ("x86_64", "amd64") and cpu._proc_cpuinfo_words():
        words = cpu._proc_cpuinfo_words()
        cpu.cpu_kernels.cache_clear()
        found = cpu.cpu_kernels()
        assert found.source == "/proc/cpuinfo" and set(found.flags) == {f for f in cpu.X86_FLAGS if f in words}
    monkeypatch.setenv("EDGEVPR_CPU_FLAGS", "sse4_2 avx avx2 fma")
    cpu.cpu_kernels.cache_clear()
    try:
        emulated = cpu.cpu_kernels()
    finally:
        monkeypatch.delenv("EDGEVPR_CPU_FLAGS")
        cpu.cpu_kernels.cache_clear()
    if cpu.platform.machine().lower() in ("x86_64", "amd64"):
        assert emulated.family == "x86-avx2" and not emulated.u8s8_exact and emulated.source == "EDGEVPR_CPU_FLAGS"


def test_auto_on_a_cpu_without_exact_u8s8_sums_keeps_the_layout_it_measures_closest(tmp_path, monkeypatch):
    """On an AVX2-only CPU (described by EDGEVPR_CPU_FLAGS), ``auto`` makes u8s8 and u8s7, runs both
    here and keeps the one whose calibration descriptors are closer to fp32; the file says so. This
    machine may sum both exactly: the test checks the choice follows the measurement, not which
    layout an AVX2 CPU would pick."""
    import onnx

    from edgevpr.config import QuantizeConfig, load_config
    from edgevpr.quantize.onnx_export import get_metadata
    from edgevpr.quantize.pipeline import quantize_model
    from edgevpr.runtime import cpu
    from tests.conftest import write_image

    for i in range(6):
        write_image(tmp_path / "calib" / f"{i}.jpg", i, size=(96, 64))
    config = load_config(
        overrides={"model": {"backbone": "squeezenet", "aggregator": "gem"}, "data": {"size": (64, 96)}}
    )
    monkeypatch.setenv("EDGEVPR_CPU_FLAGS", "sse4_2 avx avx2 fma")
    cpu.cpu_kernels.cache_clear()
    try:
        said = []
        report = quantize_model(
            config,
            QuantizeConfig("int8", calib=str(tmp_path / "calib"), calib_count=6),
            str(tmp_path / "auto.onnx"),
            log=said.append,
        )
    finally:
        monkeypatch.delenv("EDGEVPR_CPU_FLAGS")
        cpu.cpu_kernels.cache_clear()
    measured = get_metadata(onnx.load(str(tmp_path / "auto.onnx")))["int8_layout_measured"]
    cosines = measured["mean_cosine"]
    assert set(cosines) == {"u8s8", "u8s7"} and measured["kernels"] == "x86-avx2" and measured["images"] == 6
    assert measured["chosen"] == max(cosines, key=cosines.get) == report["int8_layout"]
    assert get_metadata(onnx.load(str(tmp_path / "auto.onnx")))["int8_layout"] == measured["chosen"]
    assert report["out"] == str(tmp_path / "auto.onnx") and any("measuring u8s7" in line for line in said)
    assert 0.9 < min(cosines.values()) <= max(cosines.values()) < 1.0
