"""SHA-256 without loading OpenSSL on the hot path.

Why: `import hashlib` loads _hashlib and with it OpenSSL's libcrypto (~2 ms), on every container
start (the seccomp filter cache is keyed by a digest). CPython's own builtin implementation gives
the same digest without it.
"""

from __future__ import annotations


def sha256_hex(data: bytes) -> str:
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()
