"""MLflow models that return predictions with SHAP attributions, in Python, in batch and over REST."""

from explainable_model._version import __version__
from explainable_model.exceptions import (
    AdditivityError,
    ExplainableModelError,
    InvalidInputError,
    InvalidParameterError,
    ModelIntegrityError,
    PromotionError,
    UnsupportedEstimatorError,
)
from explainable_model.explainers import Attributions
from explainable_model.flavor import LoadedModel, default_requirements, load_model, log_model, save_model
from explainable_model.output import ParsedColumn, column_name, parse_column
from explainable_model.registry import CheckResult, PromotionReport, current_holder, promote
from explainable_model.report_builder import ReportFiles, report
from explainable_model.shap_explanation import to_shap_explanation

__all__ = [
    "AdditivityError",
    "Attributions",
    "CheckResult",
    "ExplainableModelError",
    "InvalidInputError",
    "InvalidParameterError",
    "LoadedModel",
    "ModelIntegrityError",
    "ParsedColumn",
    "PromotionError",
    "PromotionReport",
    "ReportFiles",
    "UnsupportedEstimatorError",
    "__version__",
    "column_name",
    "current_holder",
    "default_requirements",
    "load_model",
    "log_model",
    "parse_column",
    "promote",
    "report",
    "save_model",
    "to_shap_explanation",
]
