"""The code location Dagster loads (`assets_pipeline.definitions:defs`): assembled in
`location.py` from the symbols file and the environment (`config/`)."""

from assets_pipeline.location import build_definitions

defs = build_definitions()
