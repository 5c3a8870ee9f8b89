"""teebridge: the command line and the local-stack launcher that wire coprocessor, relayer and verifier."""

__version__ = "0.1.0"
