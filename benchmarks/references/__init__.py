"""Hand-written reference implementations that pyrogen is measured against, shared by the
benchmarks and the tests: :mod:`~benchmarks.references.plain_vae` (a VAE written out in PyTorch) and
:mod:`~benchmarks.references.ali` (ALI after its authors' recipe)."""
