-- compose's PostgreSQL holds two databases: Dagster's own (POSTGRES_DB, from DAGSTER_PG_DB) and the
-- trading database this project writes (TRADING_DATABASE_URL names it). Its schemas and tables are
-- created by `assets-pipeline migrate` (compose's `migrate` service), never at run time. Runs once,
-- when the data volume is new.
CREATE DATABASE trading;
