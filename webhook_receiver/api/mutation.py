"""One transaction per mutating API call, with Idempotency-Key and the audit log inside it.

The call's effect, its audit entry, its outbox events and the response stored for its
Idempotency-Key commit together; the events go to the workers after the commit. A repeat of
the key with the same request gets the stored response; with another request, 409. A
concurrent repeat waits for the first to finish. Errors roll everything back, so a failed
call stores nothing and may simply be retried.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from flask import Response, g, jsonify, request
from sqlalchemy.orm import Session

from ledger import audit, idempotency, outbox
from webhook_receiver.auth import Principal, current_principal
from webhook_receiver.errors import Invalid
from webhook_receiver.services import services
from workers.jobs import DELIVER_NOTIFICATIONS, Job

View = Callable[..., tuple[dict[str, Any], int]]
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_JOBS = "walletpipe_jobs_after_commit"


def _fingerprint() -> bytes:
    """What makes two requests the same: method, path, and the body (canonical if JSON)."""
    raw = request.get_data(cache=True)
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        canonical = raw
    return hashlib.sha256(
        b"%s %s\n%s" % (request.method.encode(), request.path.encode(), canonical)
    ).digest()


def mutation(
    action: str, *, key_required: bool = False
) -> Callable[[View], Callable[..., Response]]:
    """Run the view as `view(session, **url_args) -> (body, status)` in one audited transaction.

    `action` names the change in the audit log; its subject is the response's `id`. With
    `key_required`, a call without an Idempotency-Key is refused: it moves money, and a retry
    after a lost answer must not move it again.
    """

    def decorate(view: View) -> Callable[..., Response]:
        @functools.wraps(view)
        def run(**url_args: Any) -> Response:
            principal = current_principal()
            key = request.headers.get("Idempotency-Key")
            if key is not None and not _KEY.fullmatch(key):
                raise Invalid("Idempotency-Key must be 1 to 255 printable ASCII characters")
            if key is None and key_required:
                raise Invalid("this call moves money: send an Idempotency-Key header")
            scope = _key_scope(principal)
            with services().sessions.begin() as session:
                if key is not None:
                    stored = idempotency.claim(
                        session, subject=scope, key=key, fingerprint=_fingerprint()
                    )
                    if stored is not None:
                        response = jsonify(stored.body)
                        response.status_code = stored.status_code
                        response.headers["Idempotent-Replayed"] = "true"
                        return response
                body, status = view(session, **url_args)
                _audit(session, action, principal.subject, body, url_args)
                if key is not None:
                    idempotency.remember(
                        session, subject=scope, key=key, status_code=status, body=body
                    )
                # One doorbell for the call's events: the workers claim what is due.
                jobs: list[tuple[Job, tuple[Any, ...]]] = (
                    [(DELIVER_NOTIFICATIONS, ())] if outbox.emitted(session) else []
                )
            jobs += g.pop(_JOBS, [])
            for job, args in jobs:  # committed: the relay re-sends any that fail to go out
                services().sender.send(job, *args)
            response = jsonify(body)
            response.status_code = status
            return response

        return run

    return decorate


def after_commit(job: Job, *args: Any) -> None:
    """Send `job(*args)` to the workers once this call's transaction has committed."""
    g.setdefault(_JOBS, []).append((job, args))


def _key_scope(principal: Principal) -> str:
    """Whose keys these are: the token's subject within its tenant (JSON: no two collide)."""
    return json.dumps([principal.subject, principal.owner_id])


def ledger_key(kind: str) -> str:
    """A ledger idempotency key for this call, from its Idempotency-Key: bounded in length and
    never shared between subjects or tenants."""
    principal = current_principal()
    client_key = request.headers.get("Idempotency-Key", "")
    digest = hashlib.sha256(f"{_key_scope(principal)}\n{client_key}".encode()).hexdigest()
    return f"{kind}:{digest}"


def _audit(
    session: Session, action: str, actor: str, body: dict[str, Any], url_args: dict[str, Any]
) -> None:
    audit.record(
        session,
        actor=f"api:{actor}",
        action=action,
        subject=str(body.get("id") or next(iter(url_args.values()), "")),
        request_id=g.get("request_id"),
        details={"request": request.get_json(silent=True), "status": body.get("status")},
    )
