"""`rosesync bootstrap`: the one-time authorization code flow (seed steps 2-5), end to end.

The order is chosen so that everything that can fail without the person's help (client
settings, the encryption key, the database, the listener's port) fails before a browser opens,
and nothing is stored unless the code exchange returned a refresh token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.engine import Engine

from config.settings import Settings
from worker.clock import utcnow
from worker.credentials.callback import LoopbackListener, code_from_pasted
from worker.credentials.cipher import load_cipher
from worker.credentials.oauth import authorization_request, discover, exchange_code
from worker.credentials.store import NO_ORG, CredentialStatus, CredentialStore
from worker.errors import RoseSyncError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 300.0


def bootstrap(
    settings: Settings,
    engine: Engine,
    *,
    announce: Callable[[str], None],
    org: str | None = None,
    paste: Callable[[], str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> CredentialStatus:
    """Authorize rosesync and store the credential for ``org`` (default: the settings' org).

    ``announce(url)`` shows the authorization URL (it holds no secret: state and the PKCE
    challenge are useless without our listener and verifier). With ``paste``, the redirect URL
    is read from it instead of from a loopback listener. Replaces an existing credential.
    """
    settings.require_client()
    store = CredentialStore(settings, engine, org=org, cipher=load_cipher(settings, create=True))
    endpoints = discover(settings)
    request = authorization_request(settings, endpoints)

    def exchange(code: str) -> None:
        requested_at = utcnow()
        store.replace(exchange_code(settings, endpoints, code, request), requested_at)

    if paste is None:
        with LoopbackListener(request.redirect_uri, request.state) as listener:
            announce(request.url)
            code = listener.wait(timeout)
            # The browser's page waits for this, so that it tells the truth (issue 17).
            try:
                exchange(code)
            except RoseSyncError as exc:
                listener.report(str(exc))
                raise
            listener.report(None)
    else:
        announce(request.url)
        exchange(code_from_pasted(paste(), request.redirect_uri, request.state))
    if store.org != NO_ORG:
        # The code grant names no org; Rose Rocket binds a grant to the org_id its first refresh
        # sends. Binding it now means every token of this credential reads that org's records
        # from the first request on (issue 15: one credential per org, one client).
        bound = store.refresh(force=True)
        if bound.action == "failed":
            raise RoseSyncError(bound.error or f"the first refresh for org {store.org!r} failed")
    status = store.status()
    assert status is not None  # just written
    log.info(
        "stored the credential for org %s; access token valid until %s",
        store.org,
        status.expires_at.isoformat(timespec="seconds"),
    )
    return status
