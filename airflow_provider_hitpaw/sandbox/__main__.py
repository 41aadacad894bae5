"""``python -m airflow_provider_hitpaw.sandbox``: run the HitPaw sandbox (see ``--help``)."""

from airflow_provider_hitpaw.sandbox.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
