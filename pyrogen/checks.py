"""Checks of the sizes and counts that pyrogen's functions take, shared by every layer.

A size may be any integer, Python's or NumPy's (``np.int64(5)``, what indexing a
NumPy array or ``np.arange`` gives), but not a bool and not a float that happens
to be whole; accepted values are returned as Python ``int`` so that they
serialize to JSON as configurations do.
"""

import numbers

from pyrogen.errors import DataError


def is_integer(value):
    """Whether ``value`` is an integer, Python's or NumPy's (``numbers.Integral``), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_count(value, minimum=1):
    """Whether ``value`` is an integer (:func:`is_integer`) of at least ``minimum``."""
    return is_integer(value) and value >= minimum


def check_count(value, name, minimum=1, error=DataError):
    """``value`` as a Python int; ``error`` (one line naming ``name``) if it is not a count of at least ``minimum``."""
    if not is_count(value, minimum):
        what = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise error(f"{name} must be {what}, got {value!r}")
    return int(value)


def sizes(value, length=None):
    """``value`` as a tuple of Python ints if it is a sequence of counts (a tuple, list, ``torch.Size`` or 1-d
    NumPy array, of ``length`` entries when given); None otherwise."""
    if isinstance(value, (str, bytes)) or getattr(value, "ndim", 1) != 1:
        return None
    try:
        entries = tuple(value)
    except TypeError:
        return None
    if (length is not None and len(entries) != length) or not all(is_count(v) for v in entries):
        return None
    return tuple(int(v) for v in entries)
