"""HitPaw's API as HitPaw documents it, and nothing else: endpoints, error codes, the model catalog.

No Airflow and no client code here. The client reads it (the hooks, :mod:`~airflow_provider_hitpaw.errors`,
:mod:`~airflow_provider_hitpaw.validation`), and so does the sandbox, which imports nothing else of the
package: a mistake in the client's reading of the contract cannot be repeated by the server that tests it.
"""
