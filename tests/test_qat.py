"""``train --qat``: weights fake-quantized on the deployed int8 grid while training. The levels a
QAT layer computes with are the ones ``quantize`` writes after BatchNorm folding; the gradient
passes the rounding; checkpoints hold plain parameter names, and a QAT run quantizes."""

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgevpr.cli import main
from edgevpr.models.checkpoint import read_checkpoint
from edgevpr.quantize.bn_fold import fold_conv_bn
from edgevpr.quantize.weight_grid import int8_weight
from edgevpr.train.qat import WeightFakeQuant, attach_weight_fake_quant, load_plain_state_dict, plain_state_dict


def _conv_bn(groups=1, seed=0):
    torch.manual_seed(groups + 10 * seed)
    conv, bn = nn.Conv2d(8, 8, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(8)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.2, 2)
    bn.weight.data.uniform_(-2, 2)  # negative factors too: the symmetric grid absorbs the sign
    bn.bias.data.uniform_(-1, 1)
    return nn.Sequential(conv, bn).eval()


@pytest.mark.parametrize("groups, qmax", [(1, 64), (1, 127), (8, 127)])
def test_the_levels_trained_are_the_ones_the_folded_file_holds(groups, qmax):
    """Fake-quantized conv then BatchNorm equals BN folded into the conv, then rounded to nearest
    on the deploy path's grid (weight_grid.int8_weight)."""
    net = _conv_bn(groups)
    x = torch.randn(2, 8, 9, 9)
    folded = _conv_bn(groups)
    fold_conv_bn(folded[0], folded[1])
    deployed = folded[0]
    with torch.no_grad():
        deployed.weight.copy_(torch.from_numpy(int8_weight(deployed.weight.numpy(), qmax)))
    attach_weight_fake_quant(net, qmax)
    with torch.no_grad():
        assert torch.allclose(net(x), deployed(x), atol=1e-5)
        plain = _conv_bn(groups)(x)
    assert not torch.allclose(net(x), plain, atol=1e-3)  # the rounding is really there


def test_the_gradient_passes_the_rounding_unchanged():
    weight = torch.randn(4, 3, 3, 3, requires_grad=True)
    quantized = WeightFakeQuant(64)(weight)
    levels = quantized.detach() / (weight.detach().abs().flatten(1).amax(1) / 64).reshape(-1, 1, 1, 1)
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= 64 + 1e-4
    upstream = torch.randn_like(weight)
    (quantized * upstream).sum().backward()
    assert torch.equal(weight.grad, upstream)


def test_a_qat_state_dict_has_plain_names_and_loads_both_ways():
    qat, plain = _conv_bn(), _conv_bn()
    attach_weight_fake_quant(qat, 127)
    state = plain_state_dict(qat)
    assert set(state) == set(plain.state_dict())
    plain.load_state_dict(state)
    again = _conv_bn(seed=1)
    attach_weight_fake_quant(again, 127)
    load_plain_state_dict(again, state)
    assert torch.equal(again[0].parametrizations.weight.original, qat[0].parametrizations.weight.original)


@pytest.mark.slow
def test_train_qat_writes_a_checkpoint_that_quantizes(tmp_path, training_street):
    run = tmp_path / "run"
    args = ["train", "--backbone", "squeezenet", "--aggregator", "gem", "--size", "72x96", "--threads", "1"]
    args += ["--train-dataset", str(training_street), "--epochs", "1", "--queries-per-epoch", "16"]
    args += ["--refresh-every", "8", "--qat", "--int8-layout", "u8s7", "--run-dir", str(run)]
    trained = CliRunner().invoke(main, args)
    assert trained.exit_code == 0, trained.output
    assert "int8 weights fake-quantized in 25 layers (--qat)" in (run / "train.log").read_text()
    checkpoint = read_checkpoint(run / "last.pt")
    assert checkpoint["config"]["train"]["qat"] is True
    assert not any("parametrizations" in key for key in checkpoint["model"])
    out = tmp_path / "qat.onnx"
    quantized = CliRunner().invoke(
        main,
        ["quantize", "--checkpoint", str(run / "best.pt"), "--precision", "int8", "--int8-layout", "u8s7"]
        + ["--calib", str(training_street / "database"), "--calib-count", "8", "--out", str(out)],
    )
    assert quantized.exit_code == 0, quantized.output
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0 and "resumed from" in (run / "train.log").read_text(), resumed.output
