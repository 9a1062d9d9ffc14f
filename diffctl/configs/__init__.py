"""The frozen config dataclasses that the ``diffctl`` command builds its flags from.

Each module here holds the settings of one area (``agents``, ``control``, ``irl``, ``models``)
and imports no torch and nothing else heavy, so that ``diffctl <command> --help`` and a usage
error answer at once. The classes belong to their algorithms, which re-export them: use
``from diffctl.control import MPCConfig``, ``from diffctl.agents.ppo import PPOConfig`` and so
on; import from here only where torch must not load (the command line).

Why here and not lazily in the packages: a package such as ``diffctl.control`` exports a function
named like one of its modules (``lqr``), and importing that module rebinds the package attribute,
so a lazy ``__getattr__`` could hand out the module instead of the function.
"""
