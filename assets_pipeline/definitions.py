"""The code location Dagster loads (`assets_pipeline.definitions:defs`): assembled in
`location.py` from the symbols file and the environment (`config/`), once per process, with
Python's cyclic collector paused meanwhile (docs/design/load-cost.md)."""

import gc

_collecting = gc.isenabled()
gc.disable()
try:
    from assets_pipeline.location import build_definitions

    defs = build_definitions()
    gc.freeze()  # built once, kept as long as the process: never scanned again
finally:
    if _collecting:
        gc.enable()
