"""The exit statuses of ``roost serve``."""

EXIT_BAD_CONFIG = 2  # refused to start: the configuration, the data directory, the address
EXIT_SECOND_SIGNAL = 3  # a second signal during shutdown
