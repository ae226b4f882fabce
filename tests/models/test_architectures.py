"""Every built-in architecture survives a checkpoint round trip bit for bit.

The checkpoint's ``arch`` entry (registry name + every constructor argument)
must be enough to rebuild the module without the data set (DESIGN.md
"Checkpoint"), and the rebuilt module must compute exactly the same logits.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import torch
from torch import nn

from unlearn_cli.errors import BadInput
from unlearn_cli.models import registry
from unlearn_cli.models.checkpoint import load_checkpoint, save_checkpoint

BUILTINS = ("linear", "mlp", "cnn", "densenet")

# arch name, input shape, classes, extra kwargs, exact parameter count
CASES = [
    pytest.param("linear", (5,), 3, {}, 5 * 3 + 3, id="linear"),
    pytest.param("mlp", (2,), 2, {"hidden": [64, 32], "activation": "relu"},
                 (2 * 64 + 64) + (64 * 32 + 32) + (32 * 2 + 2), id="mlp-relu"),
    pytest.param("mlp", (4,), 3, {"hidden": [7], "activation": "sigmoid"},
                 (4 * 7 + 7) + (7 * 3 + 3), id="mlp-sigmoid"),
    # conv 1->8 (5x5), conv 8->16 (5x5), fc 16*4*4->32, fc 32->10.
    pytest.param("cnn", (1, 28, 28), 10, {},
                 (1 * 8 * 25 + 8) + (8 * 16 * 25 + 16) + (16 * 4 * 4 * 32 + 32) + (32 * 10 + 10), id="cnn"),
    # DenseNet-BC, growth g=6, 2 bottlenecks per stage: a bottleneck on c planes holds
    # BN(c) + 1x1 conv c->4g + BN(4g) + 3x3 conv 4g->g; every stage starts at 12 planes.
    pytest.param("densenet", (1, 28, 28), 10, {},
                 1 * 12 * 9                                                    # stem 3x3 conv
                 + 4 * sum(2 * c + c * 24 + 2 * 24 + 24 * 6 * 9 for c in (12, 18))  # 4 stages
                 + 3 * (2 * 24 + 24 * 12)                                      # 3 transitions
                 + 2 * 24 + (24 * 10 + 10),                                    # final BN + linear
                 id="densenet"),
]


def _spec_and_model(name, shape, classes, kwargs, seed=0):
    spec = registry.make_spec(name, shape, classes, **kwargs)
    torch.manual_seed(seed)
    return spec, registry.build(spec)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,shape,classes,kwargs,expected_params", CASES)
def test_checkpoint_round_trip_gives_identical_logits(tmp_path, name, shape, classes, kwargs, expected_params):
    spec, model = _spec_and_model(name, shape, classes, kwargs)
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        # Non-default running statistics, so the round trip has to carry buffers too.
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(16, *shape) * 3 + 1)
    model.eval()

    path = tmp_path / f"{name}.safetensors"
    save_checkpoint(path, model.state_dict(), {"arch": spec})
    ckpt = load_checkpoint(path)
    assert ckpt.arch == spec
    rebuilt = ckpt.build_model()
    assert type(rebuilt) is type(model)
    assert not rebuilt.training, "build_model must return the module in eval mode"

    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        got = rebuilt(x)
    assert got.shape == (8, classes)
    assert torch.equal(expected, got)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, rebuilt.state_dict()[key]), key


@pytest.mark.parametrize("name,shape,classes,kwargs,expected_params", CASES)
def test_parameter_counts(name, shape, classes, kwargs, expected_params):
    _, model = _spec_and_model(name, shape, classes, kwargs)
    count = _n_params(model)
    assert count == expected_params
    assert all(p.requires_grad for p in model.parameters())


def test_mlp_activation_is_respected():
    _, relu = _spec_and_model("mlp", (3,), 2, {"hidden": [4], "activation": "relu"})
    _, sig = _spec_and_model("mlp", (3,), 2, {"hidden": [4], "activation": "sigmoid"})
    assert isinstance(relu.activation, nn.ReLU)
    assert isinstance(sig.activation, nn.Sigmoid)
    # Same seed, same weights: only the activation differs, so the outputs must too.
    for a, b in zip(relu.parameters(), sig.parameters()):
        assert torch.equal(a, b)
    x = torch.randn(5, 3)
    assert not torch.equal(relu(x), sig(x))


def test_linear_is_a_single_affine_map():
    _, model = _spec_and_model("linear", (6,), 4, {})
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(layers) == 1
    x = torch.randn(3, 6)
    assert torch.allclose(model(x), x @ layers[0].weight.T + layers[0].bias)


def test_same_seed_same_initial_weights_different_seed_different():
    _, a = _spec_and_model("cnn", (1, 28, 28), 3, {}, seed=4)
    _, b = _spec_and_model("cnn", (1, 28, 28), 3, {}, seed=4)
    _, c = _spec_and_model("cnn", (1, 28, 28), 3, {}, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_densenet_has_batchnorm_and_deterministic_eval():
    _, model = _spec_and_model("densenet", (1, 28, 28), 10, {})
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) >= 4
    x = torch.randn(6, 1, 28, 28)
    model.train()
    with torch.no_grad():
        model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    with torch.no_grad():
        first = model(x)
        second = model(x)
        # Eval mode uses running statistics: a row's logits do not depend on its batch.
        alone = model(x[:1])
    assert torch.equal(first, second)
    assert torch.allclose(first[:1], alone, atol=1e-5)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "eval forward must not touch BN buffers"


def test_densenet_other_input_sizes():
    for shape in [(3, 32, 32), (1, 12, 12)]:
        _, model = _spec_and_model("densenet", shape, 4, {})
        with torch.no_grad():
            assert model.eval()(torch.randn(2, *shape)).shape == (2, 4)


@pytest.mark.parametrize("name,shape", [("cnn", (784,)), ("densenet", (784,)), ("cnn", (1, 8, 8))])
def test_image_architectures_reject_unsuitable_shapes(name, shape):
    with pytest.raises(BadInput, match=name):
        registry.build(registry.make_spec(name, shape, 3))


def test_bad_constructor_arguments_are_bad_input():
    with pytest.raises(BadInput, match="mlp"):
        registry.build(registry.make_spec("mlp", (2,), 2, activation="tanh"))
    with pytest.raises(BadInput, match="mlp"):
        registry.build(registry.make_spec("mlp", (2,), 2, no_such_argument=1))
    with pytest.raises(BadInput, match="malformed"):
        registry.build({"kwargs": {}})


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(BadInput) as info:
        registry.get_builder("resnet152")
    message = str(info.value)
    assert "resnet152" in message
    assert "\n" not in message
    for name in BUILTINS:
        assert name in message
    with pytest.raises(BadInput, match="resnet152"):
        registry.build(registry.make_spec("resnet152", (2,), 2))


def test_builtins_register_through_the_entry_point_group():
    eps = {ep.name: ep for ep in entry_points(group=registry.GROUP)}
    assert registry.GROUP == "unlearn.architectures"
    assert set(BUILTINS) <= set(eps)
    for name in BUILTINS:
        assert eps[name].value.startswith("unlearn_cli.models.")
        assert callable(eps[name].load())
    assert set(BUILTINS) <= set(registry.available())
    assert registry.get_builder("mlp") is eps["mlp"].load()


def test_make_spec_records_every_argument_as_json_types():
    spec = registry.make_spec("mlp", (1, 2, 3), 4, hidden=[5])
    assert spec == {"name": "mlp", "kwargs": {"input_shape": [1, 2, 3], "num_classes": 4, "hidden": [5]}}


def test_no_registered_architectures_says_how_to_register_them(monkeypatch):
    from unlearn_cli import plugins

    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    plugins.available.cache_clear()
    try:
        with pytest.raises(BadInput, match=r"no architectures are registered: install the package \(pip install -e \.\)"):
            registry.get_builder("mlp")
    finally:
        plugins.available.cache_clear()
