"""The Polygon call budget, in one place: what the HTTP client sees of it (`interface`), how
its slots are shared (`fairness`), waiting for a slot (`limiter`), and the stores that keep it
for every process (`redis_store`, `sql_store`). Only the stores touch Redis or the database."""
