"""Plain nn.Modules: the loss-prediction head and the task models."""
from lossal_tasks.heads.loss_prediction import LossPredictionHead, global_average_pool
from lossal_tasks.heads.resnet import CifarResNet, resnet18_cifar
from lossal_tasks.heads.hourglass import StackedHourglass, stacked_hourglass
from lossal_tasks.heads.ssd import SSDDetector, build_ssd, ssd300_vgg16, ssd_quick

__all__ = ["LossPredictionHead", "global_average_pool", "CifarResNet", "resnet18_cifar",
           "StackedHourglass", "stacked_hourglass",
           "SSDDetector", "build_ssd", "ssd300_vgg16", "ssd_quick"]
