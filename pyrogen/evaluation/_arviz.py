"""ArviZ, imported without its notice about its coming 1.0 refactor.

ArviZ 0.2x warns (a ``FutureWarning``, once a day) at import that its next major release will change
its interface. pyrogen requires ``arviz<1``, so the notice concerns pyrogen's maintainers, not its
users: :func:`import_arviz` hides that one warning, and only while ArviZ is imported.
"""

import warnings


def import_arviz():
    """Import and return the ``arviz`` module, hiding only its refactor ``FutureWarning``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
        import arviz

    return arviz
