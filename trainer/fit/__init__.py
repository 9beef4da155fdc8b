"""Settings fitted to the card and the model the user picks: the model's shape, its predicted peak memory, the fastest
settings that fit, and the time an epoch takes, told before the model loads."""
