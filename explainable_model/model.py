"""The MLflow PythonModel that serves predictions with attributions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import Model
from mlflow.pyfunc import PythonModel, PythonModelContext

from explainable_model.engine import ExplanationEngine
from explainable_model.explainers import build_shap_explainer
from explainable_model.explainers.lime import LimeExplainer
from explainable_model.params import ExplanationSettings
from explainable_model.persistence import (
    ESTIMATOR_ARTIFACT,
    STATE_ARTIFACT,
    load_any_estimator,
    read_state,
    verify_manifest,
)

logger = logging.getLogger(__name__)

FLAVOR_NAME = "explainable_model"


def load_engine(model_root: Path, estimator_path: Path, state_path: Path) -> ExplanationEngine:
    """Verify a saved model's files and rebuild its estimator and explainers."""
    config = Model.load(str(model_root / "MLmodel")).flavors[FLAVOR_NAME]
    verify_manifest(model_root, config["manifest"])

    features, explainers, background, lime_state = read_state(state_path)
    estimator = load_any_estimator(estimator_path, config["estimator"])
    settings = ExplanationSettings(**explainers["settings"])
    shap_state = explainers["shap"]
    explainer = build_shap_explainer(
        estimator,
        shap_state["method"],
        config["task"],
        shap_state["units"],
        features,
        background,
        n_orderings=settings.shap_orderings,
        n_jobs=settings.n_jobs,
    )
    logger.info(
        "Loaded %s with %s SHAP in %s units.", config["estimator"]["class"], shap_state["method"], shap_state["units"]
    )
    lime_explainer = None if lime_state is None else LimeExplainer.from_state(lime_state, features)
    return ExplanationEngine(
        estimator, features, config["task"], config["classes"], shap_state["units"], explainer, settings, lime_explainer
    )


class ExplainableModel(PythonModel):
    """Returns predictions with per-row attributions, as one DataFrame."""

    def __init__(self) -> None:
        self.engine: ExplanationEngine | None = None

    def load_context(self, context: PythonModelContext) -> None:
        state_path = Path(context.artifacts[STATE_ARTIFACT])
        # Artifacts are copied to <model root>/artifacts/<name>.
        model_root = state_path.parents[1]
        self.engine = load_engine(model_root, Path(context.artifacts[ESTIMATOR_ARTIFACT]), state_path)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # MLflow has already dropped parameters that the signature does not declare, so only
        # the declared ones are checked here.
        if self.engine is None:
            raise RuntimeError("predict() called before load_context(); load the model with mlflow.pyfunc.load_model.")
        return self.engine.predict(model_input, params, strict=False)
