"""Which release keys the server trusts, and the chain of key sets devices follow (manifests/README.md,
"Key rotation"). The server holds no private release key: it trusts public keys it is told about
(`release key trust`), stops accepting manifests signed by a retired one (`release key retire`), and
stores key-set documents the CLI signed, refusing any that devices would refuse or that break the chain.
"""

from __future__ import annotations

import base64

from sqlmodel import Session, select

from otaml.core.config import Settings
from otaml.core.errors import ConflictError, KeySetError, ManifestError, NotFoundError, SignatureError, TestKeyError
from otaml.manifest import keyset, signing
from otaml.models import KeySet, SigningKey, utcnow

# The repository's test keys (manifests/keys/test-*.pub.pem; tests/server/test_keys.py keeps these in
# step): anyone can sign with them, so a server outside development refuses to trust them.
TEST_KEY_IDS = frozenset({"fd7cf9f0425e9359", "9ce3728dc8eb9fa6", "c6b7b208a7362da5"})


def refuse_test_key(settings: Settings, key_id: str) -> None:
    if key_id in TEST_KEY_IDS and settings.environment != "development" and not settings.allow_test_keys:
        raise TestKeyError(
            f"key {key_id} is one of the repository's test keys (manifests/keys/test-*.pem), whose private half is "
            f"public; refused outside development: create a key with `release keygen`"
        )


def trust(session: Session, settings: Settings, public_pem: str) -> SigningKey:
    """Trust a public key (again, if it was retired). Idempotent."""
    key = signing.load_public_key(public_pem)
    kid = signing.key_id(key)
    refuse_test_key(settings, kid)
    row = session.get(SigningKey, kid)
    if row is None:
        row = SigningKey(key_id=kid, public_pem=signing.public_pem(key))
    row.retired_at = None
    session.add(row)
    return row


def retire(session: Session, key_id: str) -> SigningKey:
    """Stop accepting manifests signed by key_id. The last key that is not retired cannot go: nothing
    could be published any more."""
    row = session.get(SigningKey, key_id)
    if row is None:
        raise NotFoundError(f"no trusted key {key_id!r}")
    active = [k for k in session.exec(select(SigningKey)).all() if k.retired_at is None and k.key_id != key_id]
    if row.retired_at is None and not active:
        raise ConflictError(f"expected another trusted key before retiring {key_id}, got none: `release key trust` one first")
    row.retired_at = row.retired_at or utcnow()
    session.add(row)
    return row


def chain(session: Session) -> list[KeySet]:
    return list(session.exec(select(KeySet).order_by(KeySet.keyset_version)).all())  # type: ignore[arg-type]


def accept_keyset(session: Session, settings: Settings, document_b64: str, signature: str) -> KeySet:
    """Store the next key set of the chain. Refused (KeySetError, naming the rule): a document devices
    would refuse (strict JSON, field rules, size), another project, a version that is not the next one,
    a signature by no key of the previous set (set 0: the keys this server knows), a test key outside
    development."""
    try:
        body = signing.decode_base64_strict(document_b64)
    except SignatureError:
        raise KeySetError("expected the key-set document in standard base64") from None
    try:
        fields = keyset.read(body)
    except ManifestError as e:
        raise KeySetError(str(e)) from None
    if fields.project != settings.project:
        raise KeySetError(f"expected a key set for project {settings.project!r}, got {fields.project!r}")
    for kid in fields.key_ids:
        refuse_test_key(settings, kid)
    existing = chain(session)
    expected = existing[-1].keyset_version + 1 if existing else 1
    if fields.keyset_version != expected:
        raise ConflictError(f"expected keyset_version {expected} (the next of the chain), got {fields.keyset_version}")
    if existing:
        previous = keyset.read(existing[-1].body)
        signers = list(zip(previous.key_ids, previous.public_keys(), strict=True))
        whose = f"key set {previous.keyset_version}"
    else:
        rows = session.exec(select(SigningKey)).all()
        signers = [(r.key_id, signing.load_public_key(r.public_pem)) for r in rows]
        whose = "the keys this server trusts (the devices' built-in set)"
    for kid, key in signers:
        try:
            signing.verify(key, body, signature)
        except SignatureError:
            continue
        _check_served_manifests(session, fields)
        row = KeySet(keyset_version=fields.keyset_version, body=body, signature=signature, signer=kid)
        session.add(row)
        return row
    raise KeySetError(
        f"expected a signature by a key of {whose} ({', '.join(k for k, _ in signers) or 'none'}), got one that none verifies"
    )


def _check_served_manifests(session: Session, fields: keyset.KeySetFields) -> None:
    """Every channel's baseline manifest must verify with the new set, or every device that takes the set
    would refuse its channel's manifest (bad_signature) until someone re-signs it."""
    from otaml.models import Manifest
    from otaml.releases.publishing import current_manifest

    for channel in session.exec(select(Manifest.channel).distinct()).all():
        m = current_manifest(session, channel)
        if m is not None and m.key_id not in fields.key_ids:
            raise ConflictError(
                f"channel {channel!r} serves manifest {m.manifest_version} signed by {m.key_id}, which key set "
                f"{fields.keyset_version} does not hold: re-sign it with a key of the new set first "
                f"(`release refresh --channel {channel} --key NEW_KEY.pem`)"
            )


def document_b64(row: KeySet) -> str:
    return base64.b64encode(row.body).decode()
