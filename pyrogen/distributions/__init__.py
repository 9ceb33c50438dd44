"""Latent families (prior and guide) and observation likelihoods."""

from pyrogen.distributions.discretized import DiscretizedLogisticMixture, QuantizedCategorical
from pyrogen.distributions.erlang import Erlang
from pyrogen.distributions.families import (
    FAMILIES,
    ROUTES,
    LatentFamily,
    LatentFamilyError,
    ParameterHead,
    check_guide_family,
    check_latent_pair,
    erlang_family,
    get_family,
    has_analytic_kl,
    kl_method,
)
from pyrogen.distributions.gompertz import Gompertz
from pyrogen.distributions.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    BetaLikelihood,
    Categorical256Likelihood,
    ContinuousBernoulliLikelihood,
    CountLikelihood,
    DiscretizedLogisticMixtureLikelihood,
    LaplaceLikelihood,
    Likelihood,
    LocationScaleLikelihood,
    NegativeBinomialLikelihood,
    NormalLikelihood,
    PoissonLikelihood,
    StudentTLikelihood,
    ZeroInflatedNegativeBinomialLikelihood,
    auto_message,
    choose_likelihood,
    default_binarize,
    get_likelihood,
    resolve_likelihood,
)
from pyrogen.distributions.projected_normal import ProjectedNormal
from pyrogen.distributions.rayleigh import Rayleigh
from pyrogen.distributions.reciprocal import Reciprocal
from pyrogen.distributions.triangular import Triangular

__all__ = [
    "FAMILIES", "ROUTES", "LatentFamily", "LatentFamilyError", "ParameterHead", "get_family",
    "has_analytic_kl", "kl_method", "check_guide_family", "check_latent_pair",
    "LIKELIHOODS", "Likelihood", "BernoulliLikelihood", "ContinuousBernoulliLikelihood",
    "LocationScaleLikelihood", "NormalLikelihood", "LaplaceLikelihood", "BetaLikelihood",
    "Categorical256Likelihood", "DiscretizedLogisticMixtureLikelihood", "default_binarize",
    "get_likelihood", "StudentTLikelihood", "CountLikelihood", "PoissonLikelihood", "NegativeBinomialLikelihood",
    "ZeroInflatedNegativeBinomialLikelihood", "choose_likelihood", "auto_message", "resolve_likelihood",
    "DiscretizedLogisticMixture", "QuantizedCategorical", "ProjectedNormal", "Rayleigh",
    "Erlang", "Gompertz", "Reciprocal", "Triangular", "erlang_family",
]  # fmt: skip
