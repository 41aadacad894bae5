"""The former name of :mod:`airflow_provider_hitpaw.contract.catalog` (HitPaw's model catalog) and
:mod:`airflow_provider_hitpaw.validation` (the checks before a paid request); kept so that existing
imports work."""

from airflow_provider_hitpaw.contract.catalog import *  # noqa: F403
from airflow_provider_hitpaw.contract.catalog import MODEL_ALIASES, MODELS  # noqa: F401
from airflow_provider_hitpaw.validation import *  # noqa: F403
