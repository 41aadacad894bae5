"""Apache Airflow provider for HitPaw's photo-enhancement API."""

__version__ = "0.1.0"
