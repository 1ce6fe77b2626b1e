"""worker/credentials/cipher.py: Fernet at rest, key rotation, the key file and its rules."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from config.settings import Settings
from worker.credentials.cipher import load_cipher
from worker.errors import ConfigError

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_environment_key_round_trip(make_settings: Callable[..., Settings]) -> None:
    cipher = load_cipher(make_settings(TOKEN_ENCRYPTION_KEY=OLD))
    stored = cipher.encrypt("an-access-token")
    assert "an-access-token" not in stored
    assert cipher.decrypt(stored, "default") == "an-access-token"
    assert OLD not in repr(cipher)


def test_key_rotation_new_first_still_reads_old_rows(
    make_settings: Callable[..., Settings],
) -> None:
    stored = load_cipher(make_settings(TOKEN_ENCRYPTION_KEY=OLD)).encrypt("token-1")
    rotated = load_cipher(make_settings(TOKEN_ENCRYPTION_KEY=f"{NEW}, {OLD}"))
    assert rotated.decrypt(stored, "default") == "token-1"
    rewritten = rotated.encrypt("token-2")
    assert load_cipher(make_settings(TOKEN_ENCRYPTION_KEY=NEW)).decrypt(rewritten, "o") == "token-2"


def test_wrong_key_is_one_line_naming_the_variable(make_settings: Callable[..., Settings]) -> None:
    stored = load_cipher(make_settings(TOKEN_ENCRYPTION_KEY=OLD)).encrypt("token")
    with pytest.raises(ConfigError) as caught:
        load_cipher(make_settings(TOKEN_ENCRYPTION_KEY=NEW)).decrypt(stored, "acme")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("TOKEN_ENCRYPTION_KEY cannot decrypt the stored credential")
    assert "'acme'" in message and NEW not in message and stored not in message


def test_a_malformed_older_key_is_refused(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEY: expected Fernet keys"):
        load_cipher(make_settings(TOKEN_ENCRYPTION_KEY=f"{NEW},not-a-key"))


def test_no_key_anywhere_is_one_line(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    with pytest.raises(ConfigError) as caught:
        load_cipher(settings)
    assert str(caught.value).startswith(
        "no encryption key: set TOKEN_ENCRYPTION_KEY or run `rosesync bootstrap`"
    )
    assert not settings.token_key_file.exists()


def test_bootstrap_creates_a_0600_key_file_and_warns(
    make_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "nested" / "dir" / "rrsync.key"
    settings = make_settings(TOKEN_KEY_FILE=str(key_file))
    with caplog.at_level(logging.WARNING):
        cipher = load_cipher(settings, create=True)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["rrsync.key"]  # no temporary left
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and str(key_file) in warning[0].getMessage()
    assert "TOKEN_ENCRYPTION_KEY" in warning[0].getMessage()
    key = key_file.read_text().strip()
    assert key not in caplog.text
    # Later commands (no create) use the same key, and a second bootstrap does not replace it.
    stored = cipher.encrypt("token")
    assert load_cipher(settings).decrypt(stored, "default") == "token"
    load_cipher(settings, create=True)
    assert key_file.read_text().strip() == key


def test_the_environment_key_wins_over_the_key_file(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(TOKEN_ENCRYPTION_KEY=NEW)
    load_cipher(settings, create=True)
    assert not settings.token_key_file.exists()


def test_a_key_file_readable_by_others_is_refused(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    load_cipher(settings, create=True)
    os.chmod(settings.token_key_file, 0o644)
    with pytest.raises(ConfigError) as caught:
        load_cipher(settings)
    assert "accessible by group or others (mode 0644)" in str(caught.value)
    assert f"chmod 600 {settings.token_key_file}" in str(caught.value)


def test_a_garbled_key_file_is_refused(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    fd = os.open(settings.token_key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key\n")
    os.close(fd)
    with pytest.raises(ConfigError, match="expected Fernet keys"):
        load_cipher(settings)


def test_a_key_file_that_is_a_directory_says_so(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Issue 13, item 9: a directory was reported as "accessible by group or others"."""
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    settings = make_settings(TOKEN_KEY_FILE=str(directory))
    with pytest.raises(ConfigError, match=r"^key file .*keys is not a regular file: "):
        load_cipher(settings)
