"""envstore.testing: shipped test helpers (local conda channels from generated packages)."""

from envstore.testing.channels import (
    MALICIOUS_KINDS,
    ChannelBuilder,
    Member,
    add_malicious_corpus,
    demo_channel,
    host_subdir,
    large_channel,
)

__all__ = [
    "MALICIOUS_KINDS",
    "ChannelBuilder",
    "Member",
    "add_malicious_corpus",
    "demo_channel",
    "host_subdir",
    "large_channel",
]
