"""One run of prunetui: its steps (``steps``), the model it builds and prunes (``build``), its
checkpoint, its result, and the engine that ties them together (``engine.run``).

Nothing is imported here: ``result`` is read by torch-free code (the store, the report), and
importing this package must not pull in torch."""
