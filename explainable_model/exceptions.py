"""Exceptions raised by explainable_model.

::

    ExplainableModelError                 base class of every error below
    ├── InvalidInputError                 predict() input that the model cannot score
    ├── InvalidParameterError             a request parameter that is unknown, mistyped or out of range
    ├── UnsupportedEstimatorError         an estimator that cannot be saved or explained as requested
    ├── AdditivityError                   an exact explainer whose attributions do not add up at save time
    ├── ModelIntegrityError               a saved model whose files were changed, removed or are unsafe to load
    └── PromotionError                    a registry promotion that cannot start or cannot take the alias lock

``InvalidInputError`` and ``InvalidParameterError`` are also ``MlflowException`` with the
``INVALID_PARAMETER_VALUE`` code, so a model served by ``mlflow models serve`` answers them with
HTTP 400 instead of a server error.
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE


class ExplainableModelError(Exception):
    """Base class of the errors raised by explainable_model."""


class _BadRequestError(ExplainableModelError, MlflowException, ValueError):
    """An error caused by the caller's request, reported as HTTP 400 when served."""

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)

    def __str__(self) -> str:
        return self.message


class InvalidInputError(_BadRequestError):
    """Input rows that the model cannot score: missing, unexpected or mistyped columns."""


class InvalidParameterError(_BadRequestError):
    """A request parameter that is unknown, has the wrong type or is out of its allowed range."""


class UnsupportedEstimatorError(ExplainableModelError, TypeError):
    """An estimator or setting that cannot be saved or explained as requested."""


class AdditivityError(ExplainableModelError):
    """Attributions of an exact explainer that do not add up to the model output."""


class ModelIntegrityError(ExplainableModelError):
    """A saved model whose files differ from its manifest or may not be loaded safely."""


class PromotionError(ExplainableModelError):
    """A promotion that cannot run: an unknown version, a missing target column, a busy alias lock."""
