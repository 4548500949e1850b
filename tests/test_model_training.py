import copy

import pytest
import torch

import lossal_tasks as lt
from conftest import TINY_TRAIN, make_vectors


def toy_model(toy_task):
    torch.manual_seed(0)
    return lt.build_loss_model(toy_task, {"dim": 4, "hidden": 8}, hidden_dim=6, in_channels=[8])


def test_prediction_shapes_and_head_parameters_registered(toy_task):
    model = toy_model(toy_task)
    prediction = model(torch.randn(5, 4))
    assert prediction.outputs.shape == (5,)
    assert prediction.loss.shape == (5,)
    assert prediction.embedding.shape == (5, 8)
    head_ids = {id(p) for p in model.head.parameters()}
    assert len(head_ids) == 2 * 1 + 2  # one branch Linear + the regressor
    assert head_ids <= {id(p) for p in model.parameters()}
    assert all(key.startswith(("target.", "head.")) for key in model.state_dict())
    assert any(key.startswith("head.branches.0") for key in model.state_dict())


def test_lazy_head_is_built_before_the_optimizer(toy_task):
    model = lt.build_loss_model(toy_task, {"dim": 4, "hidden": 8})
    assert model.head is None
    lt.train(toy_task, model, make_vectors(20), TINY_TRAIN.replace(channels_last=False, epochs=1))
    assert model.in_channels == (8,)


def _head_gradients(model, detach):
    model.zero_grad(set_to_none=True)
    inputs = torch.randn(8, 4)
    prediction = model(inputs, detach_features=detach)
    lt.ranking_loss(prediction.loss, torch.arange(8.0)).backward()
    backbone = model.target.body[0].weight.grad
    head = model.head.regressor.weight.grad
    return backbone, head


def test_head_gradient_reaches_backbone_only_before_detach(toy_task):
    model = toy_model(toy_task)
    backbone, head = _head_gradients(model, detach=False)
    assert backbone is not None and backbone.abs().sum() > 0
    assert head.abs().sum() > 0
    backbone, head = _head_gradients(model, detach=True)
    assert backbone is None or backbone.abs().sum() == 0
    assert head is not None and head.abs().sum() > 0


def test_train_detaches_from_detach_epoch_and_head_keeps_learning(toy_task, monkeypatch):
    model = toy_model(toy_task)
    seen = []
    forward = model.forward

    def spy(inputs, detach_features=False):
        seen.append(detach_features)
        return forward(inputs, detach_features)

    monkeypatch.setattr(model, "forward", spy)
    data = make_vectors(32)
    config = TINY_TRAIN.replace(channels_last=False, epochs=3, detach_epoch=1, batch_size=16, lr=0.01)
    head_before = copy.deepcopy(model.head.state_dict())
    history = lt.train(toy_task, model, data, config)
    assert seen == [False, False, True, True, True, True]
    assert [h["detached"] for h in history] == [False, True, True]
    assert any(not torch.equal(head_before[k], v) for k, v in model.head.state_dict().items())


def test_detached_epoch_changes_backbone_only_through_target_loss(toy_task):
    """With the target loss weighted out, a detached epoch must leave the backbone untouched."""

    class HeadOnly(type(toy_task)):
        def batch_loss(self, per_sample_loss, outputs, targets):
            return per_sample_loss.sum() * 0.0

    task = HeadOnly()
    model = toy_model(task)
    body_before = model.target.body[0].weight.detach().clone()
    head_before = model.head.regressor.weight.detach().clone()
    config = TINY_TRAIN.replace(channels_last=False, epochs=1, detach_epoch=0, weight_decay=0.0, momentum=0.0)
    lt.train(task, model, make_vectors(32), config)
    assert torch.equal(model.target.body[0].weight, body_before)
    assert not torch.equal(model.head.regressor.weight, head_before)
    config = config.replace(detach_epoch=None)
    lt.train(task, model, make_vectors(32), config)
    assert not torch.equal(model.target.body[0].weight, body_before)


def test_train_odd_batches_and_same_seed_same_weights(toy_task):
    data = make_vectors(23)
    config = TINY_TRAIN.replace(channels_last=False, batch_size=5)
    first, second = toy_model(toy_task), toy_model(toy_task)
    lt.train(toy_task, first, data, config)
    lt.train(toy_task, second, data, config)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_non_finite_loss_names_epoch_and_batch(toy_task):
    data = make_vectors(20)
    data.targets[13] = float("nan")
    with pytest.raises(lt.NonFiniteLossError, match="cycle 4, epoch 0, batch 0"):
        lt.train(toy_task, toy_model(toy_task), data,
                 TINY_TRAIN.replace(channels_last=False, batch_size=20), context="cycle 4")


def test_train_config_rejects_bad_values():
    with pytest.raises(lt.ConfigError, match="optimizer"):
        lt.TrainConfig(optimizer="lbfgs")
    with pytest.raises(lt.ConfigError, match="epochs"):
        lt.TrainConfig(epochs=0)
    with pytest.raises(lt.ConfigError, match="unknown TrainConfig fields \\['epoch'\\]"):
        lt.TrainConfig.from_dict({"epoch": 3})


def test_mse_objective_trains_the_head(toy_task):
    model = toy_model(toy_task)
    head_before = model.head.regressor.weight.detach().clone()
    lt.train(toy_task, model, make_vectors(32), TINY_TRAIN.replace(channels_last=False, objective="mse"))
    assert not torch.equal(model.head.regressor.weight, head_before)
    with pytest.raises(lt.ConfigError, match="objective"):
        lt.TrainConfig(objective="hinge")


def test_global_average_pool_gradient_is_exact_and_a_broadcast_view():
    from lossal_tasks.heads.loss_prediction import global_average_pool

    for shape in [(3, 4, 5, 6), (3, 4, 7), (2, 3, 2, 3, 4)]:
        feature = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(global_average_pool, (feature,))
    feature = torch.randn(4, 8, 6, 6).to(memory_format=torch.channels_last).requires_grad_()
    weights = torch.randn(8)
    (gradient,) = torch.autograd.grad((global_average_pool(feature) * weights).sum(), feature)
    assert torch.allclose(gradient, weights.view(1, 8, 1, 1).expand(4, 8, 6, 6) / 36)
    # A stride-0 view: nothing of the feature map's size is materialised for the head's gradient
    # (what kept a detector's training step over the 5% overhead target).
    assert gradient.stride()[2:] == (0, 0)
