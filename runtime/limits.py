"""Limits and defaults of the runtime, with their units in their names.

Pure constants: no imports of the rest of the runtime, no behaviour.
"""

MAX_KEY_BYTES = 2048
MAX_VALUE_BYTES = 131072
MAX_KEYS_PER_CALL = 128
# A name is stored with its actor's data, as a key is: the same limit.
MAX_ACTOR_NAME_BYTES = MAX_KEY_BYTES

DEFAULT_IDLE_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_INBOX = 1000
BLOCK_CONCURRENCY_TIMEOUT_SECONDS = 30.0
# Cloudflare's wall-time limits: 15 minutes for a queue consumer and for alarm(), 100 s for
# an HTTP request before its proxy gives up.
DEFAULT_CONSUMER_MAX_WALL_TIME_SECONDS = 900.0
ALARM_MAX_WALL_TIME_SECONDS = 900.0
DEFAULT_REQUEST_TIMEOUT_SECONDS = 100.0
# Cloudflare's message_retention_period: how long a queue keeps a message nobody acked.
DEFAULT_MESSAGE_RETENTION_SECONDS = 345_600  # 4 days
MIN_MESSAGE_RETENTION_SECONDS = 60
MAX_MESSAGE_RETENTION_SECONDS = 1_209_600  # 14 days

# LMDB's default build refuses keys of 511 bytes or more.
LMDB_MAX_KEY_BYTES = 511
DEFAULT_MAP_SIZE_BYTES = 1 << 40
DEFAULT_MAX_DBS = 16
