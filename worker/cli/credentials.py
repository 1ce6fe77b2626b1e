"""Credentials: `bootstrap`, `token status`, `token refresh`."""

from __future__ import annotations

import json
import sys

import click

from worker.cli.common import cli, err, handles_errors, out, settings, table
from worker.errors import ConfigError, RoseSyncError


@cli.command("bootstrap")
@click.option("--org", help="Org to store the credential for (default: ROSEROCKET_ORG_ID).")
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
@click.option(
    "--paste",
    is_flag=True,
    help="Headless: sign in on any machine, then paste the full redirect URL here "
    "(no listener, no browser).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds the listener waits for the sign-in callback.",
)
@handles_errors
def bootstrap_command(org: str | None, no_browser: bool, paste: bool, timeout: float) -> None:
    """Authorize rosesync once: sign in to Rose Rocket in a browser, store the credential.

    Prints the authorization URL, waits on the loopback ROSEROCKET_REDIRECT_URI for the one
    callback, exchanges the code and stores the tokens encrypted. Run it again to replace a
    credential (for example after `rosesync token status` shows reauth_required).
    """
    import webbrowser

    from worker.credentials.bootstrap import bootstrap
    from worker.ops.alerts import review_quietly
    from worker.warehouse import connect

    loaded = settings()

    def announce(url: str) -> None:
        err("Open this URL in a browser and sign in to Rose Rocket:")
        click.echo(url)  # state and the PKCE challenge only: nothing to redact, nothing to break
        if not no_browser and not paste:
            webbrowser.open(url)
        if paste:
            err("Then paste the full address the browser was sent to:")
        else:
            err(f"Waiting up to {timeout:g} s for the callback on {loaded.redirect_uri} ...")

    def read_pasted() -> str:
        line = sys.stdin.readline()
        if not line.strip():
            raise ConfigError("--paste: nothing was pasted (expected the full redirect URL)")
        return line

    engine = connect(loaded.warehouse_url)
    status = bootstrap(
        loaded,
        engine,
        announce=announce,
        org=org,
        paste=read_pasted if paste else None,
        timeout=timeout,
    )
    review_quietly(loaded, engine, None, status.org)  # "works again", if an alert was out
    out(
        f"credential for org {status.org} stored; the access token is valid until "
        f"{status.expires_at.isoformat(timespec='seconds')} and is refreshed automatically"
    )


@cli.group()
def token() -> None:
    """Inspect and refresh the stored credentials."""


@token.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handles_errors
def token_status(as_json: bool) -> None:
    """Per org: state (ok, expiring, reauth_required, key_error), expiry, seconds left, last
    refresh. key_error: this deployment's encryption key cannot decrypt the credential."""
    from worker.credentials.store import credential_statuses
    from worker.warehouse import connect

    loaded = settings()
    statuses = credential_statuses(loaded, connect(loaded.warehouse_url, create=False))
    if as_json:
        out(json.dumps([s.as_dict() for s in statuses], indent=2))
        return
    if not statuses:
        out("no credentials stored: run `rosesync bootstrap`")
        return
    rows = [
        (
            s.org,
            s.state,
            s.expires_at.isoformat(timespec="seconds"),
            s.seconds_left,
            (s.refreshed_at or s.obtained_at).isoformat(timespec="seconds"),
            s.last_error,
        )
        for s in statuses
    ]
    out(table(("org", "state", "expires at", "seconds left", "last refresh", "error"), rows))


@token.command("refresh")
@click.option("--org", help="Refresh only this org's credential (default: every stored one).")
@handles_errors
def token_refresh(org: str | None) -> None:
    """Refresh now, whether due or not (the scheduled task's code path)."""
    from worker.credentials.store import refresh_due_credentials
    from worker.errors import ReauthRequired
    from worker.ops.alerts import review_quietly
    from worker.warehouse import connect

    loaded = settings()
    engine = connect(loaded.warehouse_url)
    outcomes = refresh_due_credentials(loaded, engine, force=True, org=org)
    review_quietly(loaded, engine, None, loaded.credential_name)
    if not outcomes:
        raise ReauthRequired("no credentials stored: run `rosesync bootstrap`")
    for outcome in outcomes:
        if outcome.action == "refreshed" and outcome.expires_at is not None:
            until = outcome.expires_at.isoformat(timespec="seconds")
            out(f"{outcome.org}: refreshed, valid until {until}")
    failed = [o for o in outcomes if o.action in ("failed", "skipped_reauth_required")]
    if len(failed) == 1:
        raise RoseSyncError(failed[0].error or f"{failed[0].org}: {failed[0].action}")
    if failed:
        raise RoseSyncError(
            f"{len(failed)} credentials were not refreshed: "
            + "; ".join(f"{o.org}: {o.error}" for o in failed)
        )


@cli.group("orgs", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@handles_errors
def orgs(ctx: click.Context, as_json: bool) -> None:
    """The organizations rosesync syncs: one stored credential each (`bootstrap --org ORG`),
    with its token health and whether it is paused."""
    if ctx.invoked_subcommand is not None:
        return
    from worker.credentials.store import credential_statuses
    from worker.warehouse import connect

    loaded = settings()
    statuses = credential_statuses(loaded, connect(loaded.warehouse_url, create=False))
    if as_json:
        out(json.dumps([s.as_dict() for s in statuses], indent=2))
        return
    if not statuses:
        out("no orgs: run `rosesync bootstrap --org ORG` for each organization")
        return
    rows = [
        (
            s.org,
            "paused" if s.paused_at else "syncing",
            s.state,
            s.expires_at.isoformat(timespec="seconds"),
            s.last_error,
        )
        for s in statuses
    ]
    out(table(("org", "sync", "token", "expires at", "error"), rows))


@orgs.command("pause")
@click.argument("org")
@handles_errors
def orgs_pause(org: str) -> None:
    """Stop syncing ORG (its token keeps being refreshed; `resume` restarts it)."""
    from worker.credentials.orgs import pause
    from worker.warehouse import connect

    pause(connect(settings().warehouse_url), org)
    out(f"org {org} paused: scheduled syncs skip it")


@orgs.command("resume")
@click.argument("org")
@handles_errors
def orgs_resume(org: str) -> None:
    """Sync ORG again from its next scheduled run."""
    from worker.credentials.orgs import resume
    from worker.warehouse import connect

    resume(connect(settings().warehouse_url), org)
    out(f"org {org} resumed")


@orgs.command("remove")
@click.argument("org")
@click.option("--purge", is_flag=True, help="Also delete the org's rows from the warehouse.")
@handles_errors
def orgs_remove(org: str, purge: bool) -> None:
    """Delete ORG's credential; its rows stay in the warehouse unless --purge."""
    from worker.credentials.orgs import remove
    from worker.warehouse import connect

    purged = remove(connect(settings().warehouse_url), org, purge=purge)
    out(f"org {org} removed: its credential is deleted")
    if purge:
        total = sum(purged.values())
        tables = ", ".join(f"{name} {count}" for name, count in purged.items())
        out(f"purged {total} row(s) of org {org}: {tables or 'none were left'}")
    else:
        out("its rows are kept; `rosesync orgs remove --purge` deletes them")
