"""The ``pyrogen`` console command's entry point: the thread policy first, then the command line.

It runs before anything imports torch, so that :func:`pyrogen.threads.set_wait_policy`
acts (``GOMP_SPINCOUNT``, a short spin, unless the user set it or ``OMP_WAIT_POLICY``); then it hands over to
:func:`pyrogen.cli.main`. ``python -m pyrogen`` comes here too.
"""

from pyrogen.threads import set_wait_policy


def main(argv=None):
    """Set the thread policy, then run :func:`pyrogen.cli.main` with ``argv``; returns its exit status."""
    set_wait_policy()
    from pyrogen.cli import main as cli_main

    return cli_main(argv)
