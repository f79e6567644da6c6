-- compose's PostgreSQL holds two databases: Dagster's own (POSTGRES_DB, from DAGSTER_PG_DB) and the
-- trading database this project writes (TRADING_DATABASE_URL names it). The project creates its
-- schemas on first connection. Runs once, when the data volume is new.
CREATE DATABASE trading;
