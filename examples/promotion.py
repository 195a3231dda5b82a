"""Registry promotion on the credit data: two good models, then one that fails its checks.

Run from the repository root with ``.venv/bin/python examples/promotion.py``. It uses MLflow's
default tracking store (``sqlite:///mlflow.db`` in the working directory, unless
MLFLOW_TRACKING_URI sets another) and the registered model ``credit-promotion``:

1. a gradient boosting Pipeline is logged, registered and promoted to ``champion``; no version
   has the alias yet, so the comparative checks pass as "no holder";
2. a second, larger gradient boosting model is promoted over the first;
3. a deliberately weak model (a depth-1 tree on three columns) is promoted and rejected, and its
   report is printed. The alias stays on the second model.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from credit_scoring import build_pipeline
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

import explainable_model as em

DATA = Path(__file__).resolve().parent / "data" / "credit_data.csv"
MODEL_NAME = "credit-promotion"
ALIAS = "champion"
TARGET = "Status"




def register(estimator, train: pd.DataFrame, run_name: str) -> str:
    """Fit ``estimator`` in a Pipeline on ``train``, log and register it; return the new version."""
    features = train.drop(columns=TARGET)
    pipeline = build_pipeline(features, estimator).fit(features, train[TARGET])
    with mlflow.start_run(run_name=run_name):
        info = em.log_model(pipeline, name="model", background_data=features, registered_model_name=MODEL_NAME)
    return str(info.registered_model_version)


def show(report: em.PromotionReport) -> None:
    print()
    print(report.to_text())


def main() -> None:
    data = pd.read_csv(DATA)
    train, validation = train_test_split(data, test_size=0.25, random_state=0, stratify=data[TARGET])
    mlflow.set_experiment("credit-promotion")

    first = register(GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0), train, "first")
    show(em.promote(MODEL_NAME, first, ALIAS, validation_data=validation, target=TARGET))

    second = register(GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0), train, "second")
    show(em.promote(MODEL_NAME, second, ALIAS, validation_data=validation, target=TARGET))

    # A weak model: a single split, trained on three columns only (the others are dropped, so
    # it also fails the schema check against a holder that requires all thirteen).
    weak_train = train[["Seniority", "Age", "Amount", TARGET]]
    weak = register(DecisionTreeClassifier(max_depth=1, random_state=0), weak_train, "weak")
    report = em.promote(MODEL_NAME, weak, ALIAS, validation_data=validation, target=TARGET)
    show(report)

    holder = em.current_holder(mlflow.MlflowClient(), MODEL_NAME, ALIAS)
    print(f"\n'{ALIAS}' points to version {holder} of {MODEL_NAME}.")


if __name__ == "__main__":
    main()
