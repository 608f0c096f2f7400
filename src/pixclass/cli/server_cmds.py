"""`pixclass serve` and `pixclass user add|token|list`: the labeling server and its accounts."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from pixclass.cli.main import DbOpt, JsonOpt, WorkspaceOpt, app, handle_errors, open_ws
from pixclass.cli.output import console, emit_json

user_app = typer.Typer(no_args_is_help=True, help="Accounts of the labeling server.")
app.add_typer(user_app, name="user")


@app.command()
@handle_errors
def serve(
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps the server local.")] = "127.0.0.1",
    workspace: WorkspaceOpt = None, db_url: DbOpt = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the labeling UI, the REST API (/api, /openapi.json) and the Label Studio ML backend (/predict...)."""
    import uvicorn

    from pixclass.server import create_app

    ws = open_ws(workspace, db_url)
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach it may try to log in.")
    from pixclass.store import users

    with ws.session() as s:
        nobody = not users.list_users(s)
    console.print(f"pixclass on [bold]http://{host}:{port}[/] (workspace {ws.root})." + (
        " No accounts yet: create one with `pixclass user add NAME --role admin --password PW`." if nobody else ""))
    uvicorn.run(create_app(ws), host=host, port=port, log_level=log_level)


@user_app.command("add")
@handle_errors
def user_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="admin, annotator or viewer.")] = "annotator",
    password: Annotated[Optional[str], typer.Option(help="Password (prompted when left out).")] = None,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False,
) -> None:
    """Create an account, or update an existing one: it gets ROLE and, if it differs, the new password, which
    revokes its sessions and API tokens."""
    from pixclass.store import users

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    ws = open_ws(workspace, db_url)
    with ws.session() as s:
        old = users.find_user(s, name)
        old_hash = old.password_hash if old is not None else None
        u = users.create_user(s, name, role, password, replace=True)
        out = {"id": u.id, "name": u.name, "role": u.role, "updated": old is not None,
               "tokens_revoked": old is not None and u.password_hash != old_hash}
    if json_out:
        return emit_json(out)
    if not out["updated"]:
        console.print(f"User [bold]{out['name']}[/] ({out['role']}) created.")
    elif out["tokens_revoked"]:
        console.print(f"Existing user [bold]{out['name']}[/] updated: role {out['role']}, new password; "
                      "its sessions and API tokens are revoked.")
    else:
        console.print(f"Existing user [bold]{out['name']}[/] updated: role {out['role']}, same password.")


@user_app.command("token")
@handle_errors
def user_token(name: Annotated[str, typer.Argument(help="User name.")],
               days: Annotated[Optional[float], typer.Option(help="Expire after this many days (default: never; "
                                                                  "`pixclass user revoke` ends it).")] = None,
               workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False) -> None:
    """Print a new API token for NAME (send it as `Authorization: Bearer TOKEN`)."""
    from pixclass.errors import ConfigError
    from pixclass.store import users

    if days is not None and days <= 0:
        raise ConfigError(f"The 'days' option must be positive. Got {days}.")
    ws = open_ws(workspace, db_url)
    with ws.session() as s:
        token = users.create_token(s, _user(s, name), days=days)
    if json_out:
        return emit_json({"user": name, "token": token, "days": days})
    typer.echo(token)


def _user(s, name: str):
    from pixclass.errors import ConfigError
    from pixclass.store import users

    u = users.find_user(s, name)
    if u is None:
        raise ConfigError(f"No user {name!r}. Create it with `pixclass user add {name} --role annotator`.")
    return u


@user_app.command("revoke")
@handle_errors
def user_revoke(name: Annotated[str, typer.Argument(help="User name.")], workspace: WorkspaceOpt = None,
                db_url: DbOpt = None, json_out: JsonOpt = False) -> None:
    """Sign NAME out everywhere: its API tokens and UI sessions stop working (the password stays)."""
    from pixclass.store import users

    ws = open_ws(workspace, db_url)
    with ws.session() as s:
        n = users.revoke_tokens(s, _user(s, name))
    if json_out:
        return emit_json({"user": name, "revoked": n})
    console.print(f"Revoked {n} token(s) and session(s) of [bold]{name}[/].")


@user_app.command("remove")
@handle_errors
def user_remove(name: Annotated[str, typer.Argument(help="User name.")], workspace: WorkspaceOpt = None,
                db_url: DbOpt = None, json_out: JsonOpt = False) -> None:
    """Delete the account NAME and its tokens; its annotations stay under its name. The last admin stays."""
    from pixclass.store import users

    ws = open_ws(workspace, db_url)
    with ws.session() as s:
        users.remove_user(s, name)
    if json_out:
        return emit_json({"removed": name})
    console.print(f"Removed [bold]{name}[/].")


@user_app.command("list")
@handle_errors
def user_list(workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False) -> None:
    """List accounts and roles."""
    from pixclass.store import users

    ws = open_ws(workspace, db_url)
    with ws.session() as s:
        rows = [{"id": u.id, "name": u.name, "role": u.role} for u in users.list_users(s)]
    if json_out:
        return emit_json(rows)
    for r in rows:
        console.print(f"{r['name']}\t{r['role']}", highlight=False)

