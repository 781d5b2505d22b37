import pytest

from edgevpr.atomic import atomic_path, write_json
from edgevpr.config import load_config
from edgevpr.errors import ConfigError
from edgevpr.models.resolve import resolve_config


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  backbone: vgg16\n  dim: 128\n  mean: [0.5, 0.5, 0.5]\ndata:\n  size: [240, 320]\n")
    config = load_config(path, {"model": {"dim": 64}, "data": {"resize": None}})
    assert config.model.backbone == "vgg16" and config.model.dim == 64
    assert config.model.mean == (0.5, 0.5, 0.5) and config.data.size == (240, 320)
    assert config.to_dict()["model"]["dim"] == 64


def test_component_params_block_and_old_keys(tmp_path, capsys):
    """``backbone: {name, params}`` fills the params block; an old flat key lands in the same
    place with a one-line note naming the new one; the command line's flags keep their spelling."""
    new = tmp_path / "new.yaml"
    new.write_text("model:\n  backbone: {name: ghostcnn, params: {dilation: [3, 1]}}\n  aggregator: netvlad\n")
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  backbone: ghostcnn\n  dilation: [3, 1]\n  aggregator: netvlad\n  clusters: 64\n")
    from_new, from_old = load_config(new), load_config(old)
    notes = capsys.readouterr().err.strip().splitlines()
    assert from_new.model.backbone == "ghostcnn" and from_new.model.backbone_params == {"dilation": [3, 1]}
    assert from_old.model.backbone_params == {"dilation": [3, 1]} and from_old.model.aggregator_params == {}
    resolved = resolve_config(from_old).to_dict()["model"]
    assert resolved == resolve_config(from_new).to_dict()["model"]
    assert resolved["backbone_params"] == {"dilation": (3, 1)} and resolved["aggregator_params"] == {
        "clusters": 64,
        "assign_bias": True,
        "final_norm": False,
    }
    assert notes == [
        f"Note: {old}: model.dilation: an old key; read as model.backbone.params.dilation (write it there)",
        f"Note: {old}: model.clusters: an old key; read as model.aggregator.params.clusters (write it there)",
    ]
    flags = load_config(overrides={"model": {"aggregator": "gem", "gem_p": 2.5}})
    assert flags.model.aggregator_params == {"p": 2.5} and capsys.readouterr().err == ""


def test_search_rerank_and_output_sections_and_the_old_eval_keys(tmp_path, capsys):
    """The eval section split into search, rerank and output: new YAML and old YAML give the
    same config; an old key is read with a note; flags and stored configs read silently."""
    new = tmp_path / "new.yaml"
    new.write_text(
        "search: {index: HNSW16, params: efSearch=64}\nrerank: {name: rapid, k: 20}\noutput: {out: r.json}\n"
    )
    old = tmp_path / "old.yaml"
    old.write_text("eval: {index: HNSW16, search_params: efSearch=64, rerank: rapid, rerank_k: 20, out: r.json}\n")
    from_new, from_old = load_config(new), load_config(old)
    assert from_new.to_dict() == from_old.to_dict()
    assert (from_new.search.index, from_new.search.params, from_new.rerank.name, from_new.rerank.k) == (
        "HNSW16",
        "efSearch=64",
        "rapid",
        20,
    )
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 5 and f"Note: {old}: eval.rerank_k: an old key; read as rerank.k (write it there)" in notes
    stored = load_config(overrides={"eval": {"descriptor_bits": 8, "latency_runs": 7}})
    assert stored.search.descriptor_bits == 8 and stored.eval.latency_runs == 7 and capsys.readouterr().err == ""


def test_component_options_reach_the_component():
    from edgevpr.models import build_model

    config = load_config(
        overrides={"model": {"backbone": "squeezenet", "aggregator": {"name": "gem", "params": {"p": 4.5}}}}
    )
    assert build_model(config.model).aggregator.p.item() == 4.5
    wrong = load_config(
        overrides={"model": {"backbone": "squeezenet", "aggregator_params": {"p": 4.5}, "aggregator": "mac"}}
    )
    with pytest.raises(ConfigError, match="aggregator 'mac' takes no options; got p"):
        build_model(wrong.model)


def test_comma_lists_from_the_command_line():
    config = load_config(overrides={"model": {"mean": "0.5,0.4,0.3"}})
    assert config.model.mean == (0.5, 0.4, 0.3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  backbon: vgg16\n", "unknown key 'backbon'"),
        ("modle:\n  backbone: vgg16\n", "unknown section 'modle'"),
        ("model:\n  dim: lots\n", "model.dim: expected int"),
        ("data:\n  skip_bad_images: 3\n", "expected true or false"),
        ("model: [1, 2\n", "not valid YAML"),
        ("model:\n  aggregator: {name: gem, parms: {p: 2}}\n", "expected \\{name: ..., params"),
        ("model:\n  aggregator: {name: gem, params: [2]}\n", "model.aggregator.params: expected a mapping"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert "\n" not in str(caught.value) and "bad.yaml" in str(caught.value)


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    write_json(target, {"good": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text().strip() == '{\n  "good": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
