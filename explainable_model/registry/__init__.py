"""Registry promotion: check a model version and its explanations, store a report, move an alias.

``promote`` runs the checks in :mod:`explainable_model.registry.checks`, records them in a
:class:`PromotionReport` (:mod:`explainable_model.registry.report`) and moves the alias under
the lock of :mod:`explainable_model.registry.lock`.
"""

from explainable_model.registry.checks import CHECK_NAMES, DEFAULT_BLOCKING, METRICS
from explainable_model.registry.promotion import current_holder, promote
from explainable_model.registry.report import CheckResult, PromotionReport

__all__ = ["CHECK_NAMES", "DEFAULT_BLOCKING", "METRICS", "CheckResult", "PromotionReport", "current_holder", "promote"]
