"""Models and data for the promotion tests: fitted once, logged and registered per test."""

from __future__ import annotations

import threading
import time

import mlflow
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

import explainable_model as em
from tests.helpers import credit_pipeline

TARGET = "Status"
VALIDATION_ROWS = 400


def split_credit(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return training rows and a stratified validation sample of VALIDATION_ROWS rows."""
    train, validation = train_test_split(frame, test_size=VALIDATION_ROWS, random_state=0, stratify=frame[TARGET])
    return train, validation


def fit_models(train: pd.DataFrame) -> dict[str, object]:
    """Fit the candidate models: two good ones, a weak one, and one without the 'Price' column."""
    features, target = train.drop(columns=TARGET), train[TARGET]
    return {
        "small": credit_pipeline(
            features, target, GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0)
        ),
        "large": credit_pipeline(
            features, target, GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0)
        ),
        "weak": credit_pipeline(features, target, DecisionTreeClassifier(max_depth=1, random_state=0)),
        "no_price": credit_pipeline(
            features.drop(columns="Price"),
            target,
            GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0),
        ),
    }


def register(pipeline, train: pd.DataFrame, name: str) -> mlflow.models.model.ModelInfo:
    """Log ``pipeline`` in a new run of the active experiment and register it under ``name``."""
    features = train.drop(columns=TARGET)[list(pipeline.feature_names_in_)]
    with mlflow.start_run():
        return em.log_model(
            pipeline, name="model", background_data=features, background_size=50, registered_model_name=name
        )


def race(
    name: str, versions: list[str], validation: pd.DataFrame, alias: str = "champion", timeout_s: float = 120.0
) -> list[em.PromotionReport]:
    """Promote ``versions`` to ``alias`` from one thread each and return their reports.

    Every thread waits for the others after its first check, so all of them have read the
    holder before any of them can move the alias: the promotions really overlap.
    """
    barrier = threading.Barrier(len(versions), timeout=timeout_s)
    reports: dict[str, em.PromotionReport] = {}
    errors: list[BaseException] = []

    def on_check(result: em.CheckResult) -> None:
        if result.name == "loads":
            barrier.wait()

    def run(version: str) -> None:
        try:
            reports[version] = em.promote(
                name, version, alias, validation_data=validation, target=TARGET,
                latency_calls=3, explain_rows=50, on_check=on_check, lock_timeout_s=timeout_s,
            )  # fmt: skip
        except BaseException as error:  # noqa: BLE001 - re-raised by the caller's assert
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(version,)) for version in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    assert not any(thread.is_alive() for thread in threads), f"a promotion thread is still running after {timeout_s} s"
    assert not errors, f"a promotion raised: {errors!r}"
    return [reports[version] for version in versions]


def contend_for_lock(client: mlflow.MlflowClient, name: str, threads: int = 4, rounds: int = 30) -> int:
    """Take and release the promotion lock of ``name``'s 'champion' alias from several threads.

    Returns the largest number of threads that were inside the lock at once. The first error
    that a thread raised is raised again here.
    """
    from explainable_model.registry.lock import AliasLock

    inside = 0
    max_inside = 0
    count_lock = threading.Lock()
    errors: list[BaseException] = []

    def run(index: int) -> None:
        nonlocal inside, max_inside
        try:
            for _ in range(rounds):
                with AliasLock(client, name, "champion", f"thread {index}", timeout_s=60.0, poll_interval_s=0.0):
                    with count_lock:
                        inside += 1
                        max_inside = max(max_inside, inside)
                    time.sleep(0.001)
                    with count_lock:
                        inside -= 1
        except BaseException as error:  # noqa: BLE001 - re-raised below
            errors.append(error)

    workers = [threading.Thread(target=run, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120.0)
    assert not any(worker.is_alive() for worker in workers), "a thread is still waiting for the lock after 120 s"
    if errors:
        raise errors[0]
    return max_inside
