"""The shared kernel: what every package needs and none owns (clock, phone numbers, domain enums).

It imports nothing of ours, so ``ivr_flows``, ``asterisk``, ``providers`` and ``gateway`` may all use it.
"""
