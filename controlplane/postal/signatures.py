"""Verifying Postal's webhook signatures over the raw body bytes (CONTRACTS.md §3).

`X-Postal-Signature-256` is base64(RSA PKCS#1 v1.5 over SHA-256 of the body); the legacy
`X-Postal-Signature` is the same over SHA-1. `X-Postal-Signature-KID` names the key: the hex
SHA-256 of the public key's PKCS#1 DER. We verify the bytes as received, never re-serialised JSON.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class SignatureError(Exception):
    """The webhook is unsigned, signed by another key, or tampered with."""


def key_id(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return hashlib.sha256(der).hexdigest()


def load_pem(pem: str | bytes) -> rsa.RSAPublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    if b"BEGIN" not in data:
        # Postal publishes the bare base64 body (as in its DKIM-style DNS record).
        data = b"-----BEGIN PUBLIC KEY-----\n" + data.strip() + b"\n-----END PUBLIC KEY-----\n"
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("Postal's signing key must be an RSA key")
    return key


def load_jwks(url: str, timeout: float = 5.0) -> list[rsa.RSAPublicKey]:
    """RSA keys from Postal's `/.well-known/jwks.json`."""
    document = httpx.get(url, timeout=timeout).raise_for_status().json()
    keys = []
    for jwk in document.get("keys", []):
        if jwk.get("kty") != "RSA":
            continue
        n = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=="), "big")
        e = int.from_bytes(base64.urlsafe_b64decode(jwk["e"] + "=="), "big")
        keys.append(rsa.RSAPublicNumbers(e, n).public_key())
    return keys


def verify(body: bytes, headers, public_keys: list[rsa.RSAPublicKey]) -> None:
    """Raise SignatureError unless one of `public_keys` signed exactly these bytes."""
    if not public_keys:
        raise SignatureError("no Postal signing key is configured")
    kid = headers.get("X-Postal-Signature-KID")
    candidates = [k for k in public_keys if key_id(k) == kid] if kid else public_keys
    if not candidates:
        raise SignatureError("signed with a key we do not know (X-Postal-Signature-KID)")
    for header, algorithm in (("X-Postal-Signature-256", hashes.SHA256()), ("X-Postal-Signature", hashes.SHA1())):
        value = headers.get(header)
        if not value:
            continue
        try:
            signature = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError(f"{header} is not base64") from None
        for key in candidates:
            try:
                key.verify(signature, body, padding.PKCS1v15(), algorithm)
                return
            except InvalidSignature:
                continue
        raise SignatureError(f"{header} does not match the body")
    raise SignatureError("the request carries no X-Postal-Signature-256 or X-Postal-Signature header")


def parse_json_object(body: bytes) -> dict:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("body is not JSON") from None
    if not isinstance(document, dict):
        raise ValueError("body is not a JSON object")
    return document
