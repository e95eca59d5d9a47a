"""Binance request signatures for the three API key types: HMAC_SHA256 (a shared secret), ED25519 and RSA (the
client's public key is all the sandbox holds). Shared by the REST face and the WebSocket API's session.logon.

Binance's "SIGNED Endpoint security" (spot REST API docs): the signature payload is the query string concatenated
without separator to the body; an HMAC signature is hex and not case-sensitive; an RSA (RSASSA-PKCS1-v1_5, SHA-256)
or Ed25519 signature is base64, case-sensitive, and percent-encoded where it travels in a query string or body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from functools import lru_cache
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

if TYPE_CHECKING:
    from keyguard.sandbox.state import SandboxKey

HMAC_SHA256, ED25519, RSA = "HMAC_SHA256", "ED25519", "RSA"
KEY_TYPES = (HMAC_SHA256, ED25519, RSA)
# The key types whose holder keeps the private half: the sandbox stores their public key and never a secret.
ASYMMETRIC_KEY_TYPES = (ED25519, RSA)
# "We support 2048 and 4096 bit RSA keys" (Binance spot docs, API Key Types).
RSA_KEY_BITS = (2048, 4096)

PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def _kind(public: object) -> str:
    if isinstance(public, ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(public, rsa.RSAPublicKey):
        return f"{RSA} ({public.key_size} bits)"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"EC ({public.curve.name})"
    return type(public).__name__.removeprefix("_").removesuffix("PublicKey") or "unknown"


def parse_public_key(key_type: str, pem: str) -> str:
    """The public key of an ED25519 or RSA key as the PEM the sandbox stores (SubjectPublicKeyInfo, normalised).
    ValueError says what is wrong with it, never quoting it: a client that pasted its private key by mistake must
    not see it echoed in an error."""
    data = pem.strip().encode()
    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        if _is_private_key(data):
            raise ValueError("is a private key; send only the public half (and treat this key pair as exposed: "
                             "the private key has left its holder)") from None
        raise ValueError(f"does not parse as a PEM public key; an {key_type} key takes the client's public key, "
                         "PEM-encoded (SubjectPublicKeyInfo)") from None
    if key_type == ED25519 and not isinstance(public, ed25519.Ed25519PublicKey):
        raise ValueError(f"is an {_kind(public)} public key, but key_type is {ED25519}")
    if key_type == RSA:
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError(f"is an {_kind(public)} public key, but key_type is {RSA}")
        if public.key_size not in RSA_KEY_BITS:
            raise ValueError(f"is a {public.key_size}-bit RSA key; Binance takes RSA keys of "
                             f"{' or '.join(map(str, RSA_KEY_BITS))} bits")
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _is_private_key(data: bytes) -> bool:
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        return True  # an encrypted private key: still a private key
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


@lru_cache(maxsize=256)
def _loaded(pem: str) -> PublicKey:
    public = serialization.load_pem_public_key(pem.encode())
    if not isinstance(public, ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise ValueError("the sandbox holds only Ed25519 and RSA public keys")
    return public


def signature_valid(key: SandboxKey, payload: str, signature: str) -> bool:
    """Whether `signature` signs `payload` for `key`. `signature` is the parameter's value once percent-decoded
    (hex for HMAC_SHA256, base64 for ED25519 and RSA); `payload` is the exact text that was signed."""
    message = payload.encode()
    if key.key_type == HMAC_SHA256:
        expected = hmac.new(key.secret.encode(), message, hashlib.sha256).hexdigest()
        # HMAC signatures are not case-sensitive (Binance: Signature Case Sensitivity).
        return hmac.compare_digest(expected.encode(), signature.lower().encode())
    if key.key_type not in ASYMMETRIC_KEY_TYPES or not key.public_key:
        return False
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    public = _loaded(key.public_key)
    try:
        if isinstance(public, ed25519.Ed25519PublicKey):
            if key.key_type != ED25519:
                return False
            public.verify(raw, message)
        else:
            if key.key_type != RSA:
                return False
            # "RSASSA-PKCS1-v1_5 algorithm with SHA-256 hash function" (Binance: SIGNED request example, RSA).
            public.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
