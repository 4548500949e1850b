"""lossal: Learning Loss for Active Learning (Yoo & Kweon, CVPR 2019) for any task.

>>> import lossal_tasks as lt
>>> lt.TASKS.names()
['classification', 'detection', 'pose']
"""
from lossal_tasks import heads, runs
from lossal_tasks.acquisition import Selection, acquire
from lossal_tasks.checkpoints import build_loss_model, load_checkpoint, save_checkpoint
from lossal_tasks.data import DataSplits, IndexedSubset, build_datasets, dataset_names, sample_key
from lossal_tasks.errors import BadDataError, ConfigError, LossalError, NonFiniteLossError, RunStateError
from lossal_tasks.evaluation import evaluate
from lossal_tasks.hooks import FeatureTap
from lossal_tasks.loop import cycle_dir, read_metrics, run_active_learning
from lossal_tasks.model import LossPredictionModel, Prediction
from lossal_tasks.objectives import mse_loss_objective, ranking_accuracy, ranking_loss
from lossal_tasks.plotting import plot_learning_curve
from lossal_tasks.pool import Pool
from lossal_tasks.registry import DATASETS, STRATEGIES, TASKS, Registry
from lossal_tasks.runs import Run, open_run, read_config, write_selection
from lossal_tasks.strategies import ScoredCandidates, needs
from lossal_tasks.task import Metric, Task
from lossal_tasks.training import TrainConfig, train

# Built-in tasks register themselves (and their datasets) on import.
from lossal_tasks import classification  # noqa: E402,F401
from lossal_tasks import pose  # noqa: E402,F401
from lossal_tasks import detection  # noqa: E402,F401

__version__ = "0.1.0"

__all__ = [
    "heads", "Selection", "acquire", "build_loss_model", "load_checkpoint", "save_checkpoint",
    "DataSplits", "IndexedSubset", "build_datasets", "dataset_names", "sample_key",
    "BadDataError", "ConfigError", "LossalError", "NonFiniteLossError", "RunStateError", "evaluate",
    "FeatureTap", "cycle_dir", "read_metrics", "run_active_learning", "LossPredictionModel", "Prediction",
    "mse_loss_objective", "ranking_accuracy", "ranking_loss", "plot_learning_curve", "Pool", "DATASETS",
    "STRATEGIES", "TASKS", "Registry", "Run", "open_run", "read_config", "write_selection",
    "ScoredCandidates", "needs", "Metric", "Task", "TrainConfig", "train",
]
