"""Plain nn.Modules: the loss-prediction head and the task models."""
from lossal_tasks.heads.loss_prediction import LossPredictionHead, global_average_pool
from lossal_tasks.heads.resnet import CifarResNet, resnet18_cifar

__all__ = ["LossPredictionHead", "global_average_pool", "CifarResNet", "resnet18_cifar"]
