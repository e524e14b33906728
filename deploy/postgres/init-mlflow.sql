-- A second database on the same server for the MLflow tracking + registry backend.
-- (The prediction store uses the default database, POSTGRES_DB=maskops.)
CREATE DATABASE mlflow OWNER maskops;
