import pytest
import torch
from torch import nn

import lossal_tasks as lt


def test_registry_register_get_build_names():
    registry = lt.Registry("widget")

    @registry.register("b")
    def make_b(size=1):
        return ("b", size)

    registry.register("a")(dict)
    assert registry.names() == ["a", "b"]
    assert registry.get("b") is make_b
    assert registry.build("b", size=3) == ("b", 3)
    assert "a" in registry and len(registry) == 2


def test_registry_errors_list_known_names():
    registry = lt.Registry("widget")
    registry.register("alpha")(dict)
    with pytest.raises(lt.ConfigError, match="already registered"):
        registry.register("alpha")(list)
    with pytest.raises(lt.ConfigError, match="unknown widget 'beta'; known: alpha"):
        registry.get("beta")
    with pytest.raises(lt.ConfigError, match="unknown widget 'beta'"):
        registry.unregister("beta")
    assert registry.unregister("alpha") is dict
    assert registry.names() == []
    registry.register("alpha")(list)


def test_builtin_registries():
    assert "classification" in lt.TASKS
    assert {"learning_loss", "random", "entropy"} <= set(lt.STRATEGIES.names())
    assert {"synthetic", "cifar10", "folder"} <= set(lt.dataset_names("classification"))
    with pytest.raises(lt.ConfigError, match="known: .*cifar10.*synthetic"):
        lt.build_datasets("classification", "imagenet")




class Splitter(nn.Module):
    def forward(self, x):
        return x, [x * 2, None], {"a": x + 1, "n": 3}


def test_feature_tap_flattens_tensor_tuple_list_dict_outputs():
    model = nn.Sequential()
    model.add_module("split", Splitter())
    tap = lt.FeatureTap(model, ["split"])
    x = torch.ones(2, 3)
    model(x)
    features = tap.features
    assert len(features) == 3
    assert torch.equal(features[1], x * 2) and torch.equal(features[2], x + 1)


def test_feature_tap_dotted_names_order_and_removal():
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))
    tap = lt.FeatureTap(model, ["1.1", "0"])
    model(torch.ones(5, 3))
    assert [f.shape[1] for f in tap.features] == [2, 4]
    tap.remove()
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError, match="did not run"):
        tap.features


def test_feature_tap_unknown_layer_names_the_options():
    with pytest.raises(lt.ConfigError, match="no module named \\['nope'\\].*available: 0"):
        lt.FeatureTap(nn.Sequential(nn.Linear(1, 1)), ["nope"])
