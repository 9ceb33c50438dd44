"""Evaluation: likelihoods, diagnostics and sample quality."""

from pyrogen.evaluation.likelihood import (
    elbo,
    evaluate_dataset,
    log_importance_weights,
    log_likelihood,
)

__all__ = ["elbo", "evaluate_dataset", "log_importance_weights", "log_likelihood"]
