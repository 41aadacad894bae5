"""What the tests share: local servers that misbehave on cue, an Airflow home, a deployment harness,
a PostgreSQL cluster, task contexts, and loading DAG files."""
