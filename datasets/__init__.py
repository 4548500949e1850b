"""Datasets (plain torch Datasets) and augmentation pipelines; they import only lossal_tasks.errors."""
