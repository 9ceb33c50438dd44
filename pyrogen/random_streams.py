"""Named random streams: every seed a run uses, derived from the run's seed in one place.

A run draws random numbers for several independent purposes. Each has a name
here and a seed derived from the run's ``train.seed`` (or, for the streams
that must be the same in every run, a fixed one):

=============================  ============  ===========================================================
stream                         seed          what it draws
=============================  ============  ===========================================================
``"init"``                     ``seed``      the global generators when a trainer is built: weights,
                                             then the training noise of every step
``"validation_split"``         ``seed``      which training examples a validation split holds out
``"data_order"``               ``seed + 1``  the loader's minibatch order and its dynamic binarization
``"aggressive"``               ``seed + 2``  the random minibatches of the aggressive inner loop
``"fixed_noise"``              ``seed + 3``  the fixed draws of z behind the per-epoch sample grids
``"test_binarization"``        12345         the one binarization of every run's test set
``"validation_binarization"``  12346         the one binarization of a held-out validation split
``"probe_binarization"``       54321         the training images of the linear probe of the codes
=============================  ============  ===========================================================

The values are those the code used before the streams had names (offsets +1,
+2, +3 and fixed seeds), so every run made before draws exactly the same
numbers and resumes bit for bit; ``tests/test_random_streams.py`` keeps them.
"""

RUN_STREAMS = {"init": 0, "validation_split": 0, "data_order": 1, "aggressive": 2, "fixed_noise": 3}
"""Streams derived from the run's seed: their offsets from it."""

FIXED_STREAMS = {"test_binarization": 12345, "validation_binarization": 12346, "probe_binarization": 54321}
"""Streams every run shares (the same test images in every run, whatever its seed)."""


def stream_seed(name, run_seed=None):
    """The seed of stream ``name`` (see the module's table) for a run seeded ``run_seed``.

    :raises KeyError: for an unknown stream name.
    :raises ValueError: when a run stream is asked for without ``run_seed``.
    """
    if name in FIXED_STREAMS:
        return FIXED_STREAMS[name]
    if name not in RUN_STREAMS:
        raise KeyError(f"random stream must be one of {sorted({**RUN_STREAMS, **FIXED_STREAMS})}, got {name!r}")
    if run_seed is None:
        raise ValueError(f"the random stream {name!r} is derived from the run's seed; give run_seed")
    return int(run_seed) + RUN_STREAMS[name]
