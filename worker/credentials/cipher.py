"""Encryption at rest for the stored tokens: Fernet, never plaintext.

Where the key comes from, in order:

1. ``TOKEN_ENCRYPTION_KEY``: one Fernet key, or several separated by commas. The first encrypts,
   every one decrypts (``MultiFernet``), which is how the key is rotated: put the new key first,
   keep the old one after it until ``rosesync token refresh`` has rewritten every credential.
2. The key file ``TOKEN_KEY_FILE`` (default ``var/rrsync.key``, next to the default database).
   Only ``rosesync bootstrap`` creates it, mode 0600, and says so with a WARNING: fine for a laptop,
   while production should set ``TOKEN_ENCRYPTION_KEY`` from its secret store. A key file that
   group or others can read is refused, as ssh refuses such a private key.

Any other command that finds neither fails with one line; nothing is ever stored unencrypted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config.settings import Settings
from worker.errors import ConfigError
from worker.logs import register_secret

log = logging.getLogger(__name__)


class TokenCipher:
    """Encrypts and decrypts token text; ``source`` names the key for error messages."""

    def __init__(self, keys: list[str], source: str) -> None:
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        self.source = source

    def __repr__(self) -> str:
        return f"TokenCipher(source={self.source!r})"

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str, org: str) -> str:
        """The plaintext, or a one-line ConfigError naming the key (never the ciphertext)."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"{self.source} cannot decrypt the stored credential for org {org!r}: set "
                "TOKEN_ENCRYPTION_KEY to the key it was stored with (a new key first, the old "
                "one after a comma), or run `rosesync bootstrap` again (README, Encryption key)"
            ) from None


def _checked_keys(text: str, source: str) -> list[str]:
    keys = [key.strip() for key in text.split(",") if key.strip()]
    for key in keys:
        register_secret(key)
    try:
        for key in keys:
            Fernet(key.encode())
    except ValueError:
        keys = []
    if not keys:
        raise ConfigError(
            f"{source}: expected Fernet keys (44 url-safe base64 characters each), "
            "separated by commas (README, Encryption key)"
        )
    return keys


def _read_key_file(path: Path) -> list[str]:
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):  # issue 13, item 9: a directory was "accessible by group or others"
        raise ConfigError(
            f"key file {path} is not a regular file: point TOKEN_KEY_FILE at a key file, or set "
            "TOKEN_ENCRYPTION_KEY (README, Encryption key)"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"key file {path} is accessible by group or others (mode "
            f"{stat.S_IMODE(mode):04o}): run `chmod 600 {path}` or set TOKEN_ENCRYPTION_KEY"
        )
    return _checked_keys(path.read_text(), f"key file {path}")


def _create_key_file(path: Path) -> None:
    """Write a new key so that no reader ever sees a partial file and no writer overwrites one.

    The key goes to a temporary file created with O_EXCL and mode 0600 from the start (never a
    moment with wider permissions), then is hard-linked to its final name: ``link`` fails if the
    name exists, so two bootstraps racing keep exactly one key, and the loser uses the winner's.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(Fernet.generate_key().decode() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
            log.warning(
                "generated a token encryption key in %s (mode 0600); production should set "
                "TOKEN_ENCRYPTION_KEY instead (keep this key: the stored credentials need it)",
                path,
            )
    finally:
        temporary.unlink(missing_ok=True)


def load_cipher(settings: Settings, create: bool = False) -> TokenCipher:
    """The cipher for this deployment; ``create`` (bootstrap only) may generate the key file."""
    if settings.token_encryption_key is not None:
        keys = _checked_keys(settings.token_encryption_key.reveal(), "TOKEN_ENCRYPTION_KEY")
        return TokenCipher(keys, "TOKEN_ENCRYPTION_KEY")
    path = settings.token_key_file
    if not path.exists():
        if not create:
            raise ConfigError(
                f"no encryption key: set TOKEN_ENCRYPTION_KEY or run `rosesync bootstrap` "
                f"(which creates the key file {path}; README, Encryption key)"
            )
        _create_key_file(path)
    return TokenCipher(_read_key_file(path), f"the key file {path} (TOKEN_ENCRYPTION_KEY unset)")
