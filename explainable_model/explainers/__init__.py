"""SHAP explainers and the rule that picks one for an estimator."""

from explainable_model.explainers._base import Attributions, ShapExplainer
from explainable_model.explainers.factory import (
    SHAP_METHODS,
    build_shap_explainer,
    choose_shap_method,
    shap_units,
)

__all__ = [
    "SHAP_METHODS",
    "Attributions",
    "ShapExplainer",
    "build_shap_explainer",
    "choose_shap_method",
    "shap_units",
]
