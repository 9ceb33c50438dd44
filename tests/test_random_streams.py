"""pyrogen.random_streams: the named streams keep the seeds the code used before they had names."""

import pytest

from pyrogen.random_streams import FIXED_STREAMS, RUN_STREAMS, stream_seed


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 4])
def test_run_streams_are_the_historical_offsets(seed):
    # the loader drew with seed + 1, the aggressive inner loop with seed + 2, fixed noise with seed + 3
    assert [stream_seed(n, seed) for n in ("init", "validation_split", "data_order", "aggressive", "fixed_noise")] == [
        seed,
        seed,
        seed + 1,
        seed + 2,
        seed + 3,
    ]


def test_fixed_streams_are_the_historical_seeds():
    assert (
        stream_seed("test_binarization"),
        stream_seed("validation_binarization"),
        stream_seed("probe_binarization"),
    ) == (12345, 12346, 54321)
    assert stream_seed("test_binarization", 99) == 12345  # the same test images whatever the run's seed


def test_unknown_streams_and_missing_seeds_are_refused():
    with pytest.raises(KeyError, match="random stream must be one of"):
        stream_seed("dropout", 0)
    with pytest.raises(ValueError, match="derived from the run's seed"):
        stream_seed("data_order")
    assert not set(RUN_STREAMS) & set(FIXED_STREAMS)
