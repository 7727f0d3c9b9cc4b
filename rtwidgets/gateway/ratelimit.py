"""The gateway's per-connection publish limit: the core token bucket.

The bucket is :class:`rtwidgets.core.token_bucket.TokenBucket` (one bucket for the whole library;
its clock policy is documented there: a reading earlier than the latest one adds nothing). This
module keeps the import path the gateway and its tests use.
"""

from __future__ import annotations

from rtwidgets.core.token_bucket import TokenBucket

__all__ = ["TokenBucket"]
