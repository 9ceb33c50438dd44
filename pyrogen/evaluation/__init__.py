"""Evaluation: likelihoods, diagnostics and sample quality."""

from pyrogen.evaluation.arviz_export import to_inference_data
from pyrogen.evaluation.features import load_feature_network
from pyrogen.evaluation.likelihood import (
    elbo,
    evaluate_dataset,
    log_importance_weights,
    log_likelihood,
)
from pyrogen.evaluation.psis import khat_summary, log_likelihood_with_khat, pareto_khat
from pyrogen.evaluation.sample_quality import evaluate_samples, frechet_distance, precision_recall

__all__ = [
    "elbo",
    "evaluate_dataset",
    "log_importance_weights",
    "log_likelihood",
    "khat_summary",
    "log_likelihood_with_khat",
    "pareto_khat",
    "to_inference_data",
    "evaluate_samples",
    "frechet_distance",
    "precision_recall",
    "load_feature_network",
]
