"""Pure domain logic of envstore: no I/O, no framework imports.

Submodules: ``names`` (the one name grammar), ``specs`` (parse, canonical form, hash),
``lockfile`` (conda-lock v1 model), ``builds`` (states, transitions, build keys),
``refs`` (``NS/NAME@BUILD`` references).
"""
