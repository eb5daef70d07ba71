"""Release keys the server trusts, and the key-set chain devices follow (manifests/README.md, "Key
rotation"). Admin actions; the static mirror serves the key sets for hosts that cannot set headers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlmodel import select

from otaml.api.deps import AdminDep, AuditDep, ContextDep, SessionDep
from otaml.core.errors import NotFoundError
from otaml.core.types import KeyId, Int64
from otaml.manifest import keyset
from otaml.models import (
    KeySetCreate,
    KeySetPublic,
    KeySetsPublic,
    SigningKey,
    TrustedKeyCreate,
    TrustedKeyPublic,
    TrustedKeysPublic,
)
from otaml.releases import keys

router = APIRouter(tags=["keys"])


def _public(row: SigningKey) -> TrustedKeyPublic:
    return TrustedKeyPublic(key_id=row.key_id, public_pem=row.public_pem, created_at=row.created_at,
                            retired_at=row.retired_at, test_key=row.key_id in keys.TEST_KEY_IDS)


@router.get("/api/keys", summary="Release keys: trusted and retired")
def list_keys(session: SessionDep, _: AdminDep) -> TrustedKeysPublic:
    rows = session.exec(select(SigningKey).order_by(SigningKey.created_at)).all()  # type: ignore[arg-type]
    return TrustedKeysPublic(data=[_public(r) for r in rows], count=len(rows))


@router.post("/api/keys", status_code=201, summary="Trust a release public key (manifests signed by it are accepted)")
def trust_key(body: TrustedKeyCreate, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> TrustedKeyPublic:
    audit.about("key.trust", "release key")
    row = keys.trust(session, ctx.settings, body.public_pem)
    audit.target = f"release key {row.key_id}"
    session.commit()
    session.refresh(row)
    return _public(row)


@router.post("/api/keys/{key_id}/retire", summary="Refuse manifests signed by this key from now on")
def retire_key(key_id: KeyId, session: SessionDep, audit: AuditDep) -> TrustedKeyPublic:
    audit.about("key.retire", f"release key {key_id}")
    row = keys.retire(session, key_id)
    session.commit()
    session.refresh(row)
    return _public(row)


def _keyset_public(row) -> KeySetPublic:  # type: ignore[no-untyped-def]
    return KeySetPublic(keyset_version=row.keyset_version, key_ids=keyset.read(row.body).key_ids, signer=row.signer,
                        created_at=row.created_at)


@router.get("/api/keysets", summary="The key-set chain, oldest first")
def list_keysets(session: SessionDep, _: AdminDep) -> KeySetsPublic:
    rows = keys.chain(session)
    return KeySetsPublic(data=[_keyset_public(r) for r in rows], count=len(rows))


@router.post("/api/keysets", status_code=201, summary="Add the next signed key set to the chain")
def add_keyset(body: KeySetCreate, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> KeySetPublic:
    audit.about("keyset.add", "key set")
    row = keys.accept_keyset(session, ctx.settings, body.document, body.signature)
    audit.target = f"key set {row.keyset_version}"
    session.commit()
    session.refresh(row)
    ctx.keysets.invalidate()
    ctx.mirror.write_keysets(keys.chain(session))
    return _keyset_public(row)


def _keyset_file(session, version: int | None, sig: bool) -> Response:  # type: ignore[no-untyped-def]
    rows = keys.chain(session)
    row = rows[-1] if rows and version is None else next((r for r in rows if r.keyset_version == version), None)
    if row is None:
        raise NotFoundError("no key set published" if version is None else f"no key set {version}")
    if sig:
        return Response(row.signature + "\n", media_type="text/plain")
    return Response(row.body, media_type="application/json")


@router.get("/keyset.json", include_in_schema=False)
def newest_keyset(session: SessionDep) -> Response:
    return _keyset_file(session, None, False)


@router.get("/keyset.json.sig", include_in_schema=False)
def newest_keyset_sig(session: SessionDep) -> Response:
    return _keyset_file(session, None, True)


@router.get("/keysets/{version}.json", include_in_schema=False)
def keyset_file(version: Int64, session: SessionDep) -> Response:
    return _keyset_file(session, version, False)


@router.get("/keysets/{version}.json.sig", include_in_schema=False)
def keyset_sig(version: Int64, session: SessionDep) -> Response:
    return _keyset_file(session, version, True)
