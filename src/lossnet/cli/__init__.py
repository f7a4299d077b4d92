"""The ``lossnet`` command line. Each subcommand lives in its own module with ``register(subparsers)``."""
