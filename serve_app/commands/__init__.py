"""Subcommands of the ``lwmecps`` CLI, one module each.

Contract of a command module ``serve_app/commands/<name>.py`` (then list ``<name>`` in ``serve_app.cli.COMMANDS``):

* ``register(sub)`` adds its parser with ``sub.add_parser(...)`` and sets ``func=<handler>`` via
  ``set_defaults``; the handler takes the parsed ``argparse.Namespace`` and returns an exit status (0 ok).
* Heavy imports (matplotlib, torch, ray) happen inside the handler, so ``lwmecps --help`` stays fast.
* Bad input is reported by raising :class:`envs.scenario.ScenarioError`, ``ValueError``, ``OSError`` or
  :class:`UsageError` with a one-line message naming the option or field; the CLI prints ``error: <message>``
  and exits 2.
* Anything slower than about a second announces itself with :func:`serve_app.commands.common.progress`.
"""


class UsageError(Exception):
    """A command-line argument is wrong; the message is one line naming it."""
