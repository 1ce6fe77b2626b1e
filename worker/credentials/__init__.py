"""Credentials: the one-time bootstrap, the encrypted token store, and refreshing it safely.

Module map (each imports only those above it):

- ``oauth``: the protocol, stateless: endpoints (OIDC discovery), the authorization URL with
  PKCE, the code exchange and the refresh request (one HTTP request each), OAuth error bodies
  turned into one line that says what to check.
- ``callback``: receiving the authorization response: the RFC 8252 loopback listener, or the
  redirect URL an operator pastes (``--paste``).
- ``cipher``: Fernet encryption at rest; where the key comes from (TOKEN_ENCRYPTION_KEY or the
  0600 key file that only bootstrap creates).
- ``store``: ``CredentialStore`` (cached access token, single-flight refresh across threads and
  processes), ``refresh_due_credentials`` (the beat task and `rosesync token refresh`),
  ``credential_statuses`` (`rosesync token status`, `rosesync status`).
- ``bootstrap``: `rosesync bootstrap` end to end.

The SQL lives in ``worker/warehouse/credentials.py``; the CLI only presents.
"""
