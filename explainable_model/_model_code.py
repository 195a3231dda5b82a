"""Entry point of the saved model, logged as models-from-code."""

from mlflow.models import set_model

from explainable_model.model import ExplainableModel

set_model(ExplainableModel())
