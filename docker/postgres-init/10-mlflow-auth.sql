-- Runs once, when the postgres-data volume is first initialised (as POSTGRES_USER, who then owns it):
-- the database MLflow's basic-auth app keeps users and permissions in, apart from the tracking data.
CREATE DATABASE mlflow_auth;
