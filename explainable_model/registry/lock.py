"""A lock on one alias of a registered model, held in the model registry itself.

The registry has no compare-and-set for aliases, so two promotions that re-read the holder and
then move the alias could both see the old holder and both move it. Creating a registered model
is atomic in MLflow's SQL stores, whose name column is a primary key, and so through
``mlflow server`` too: a second create fails with ``RESOURCE_ALREADY_EXISTS``. A registered
model named ``<name>.promotion-lock.<alias>`` therefore serves as the lock. It is held only
while the holder is re-read, the report stored and the alias moved, and deleted afterwards.

A create that loses the race can also fail with ``RESOURCE_DOES_NOT_EXIST``. Before it reports
a duplicate name, the SQL store reads the existing model, which the holder may have deleted in
between. That failure means the lock was just released, so the create is tried again.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from explainable_model.exceptions import PromotionError

logger = logging.getLogger(__name__)

LOCK_TAG = "explainable_model.lock"
_POLL_INTERVAL_S = 0.2


def lock_name(model_name: str, alias: str) -> str:
    """Return the name of the registered model that locks ``alias`` of ``model_name``."""
    return f"{model_name}.promotion-lock.{alias}"


class AliasLock:
    """Context manager that holds the promotion lock of one alias.

    Parameters
    ----------
    client : mlflow.MlflowClient
    model_name, alias : str
    owner : str
        Stored in the lock's description, to tell people who holds it.
    timeout_s : float
        Seconds to wait for a lock that another promotion holds.
    stale_after_s : float
        A lock older than this is taken to be left by a promotion that died, and removed.
    poll_interval_s : float
        Seconds between attempts to take a lock that another promotion holds.
    """

    def __init__(
        self,
        client: MlflowClient,
        model_name: str,
        alias: str,
        owner: str,
        timeout_s: float = 60.0,
        stale_after_s: float = 600.0,
        poll_interval_s: float = _POLL_INTERVAL_S,
    ) -> None:
        self.client = client
        self.name = lock_name(model_name, alias)
        self.owner = owner
        self.timeout_s = timeout_s
        self.stale_after_s = stale_after_s
        self.poll_interval_s = poll_interval_s
        self.waited_s = 0.0

    def _try_create(self) -> bool:
        try:
            self.client.create_registered_model(
                self.name,
                tags={LOCK_TAG: "promotion"},
                description=f"Held by {self.owner} while it moves the alias. Delete it only if no promotion runs.",
            )
            return True
        except MlflowException as error:
            if error.error_code == "RESOURCE_ALREADY_EXISTS":
                return False
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                logger.debug("The promotion lock %r was released while this create failed; trying again.", self.name)
                return False
            raise

    def _remove_if_stale(self) -> None:
        try:
            lock = self.client.get_registered_model(self.name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return
            raise
        age_s = time.time() - lock.creation_timestamp / 1000.0
        if age_s > self.stale_after_s:
            logger.warning("Removing the promotion lock %r, created %.0f s ago: %s", self.name, age_s, lock.description)
            self.release()

    def __enter__(self) -> AliasLock:
        started = time.monotonic()
        while not self._try_create():
            self._remove_if_stale()
            if time.monotonic() - started > self.timeout_s:
                raise PromotionError(
                    f"Timed out after {self.timeout_s:.0f} s waiting for the promotion lock {self.name!r}. "
                    "Another promotion holds it; if none is running, delete that registered model and retry."
                )
            time.sleep(self.poll_interval_s)
        self.waited_s = time.monotonic() - started
        logger.debug("Took the promotion lock %r after %.2f s.", self.name, self.waited_s)
        return self

    def release(self) -> None:
        """Delete the lock; a lock already gone is fine."""
        try:
            self.client.delete_registered_model(self.name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
