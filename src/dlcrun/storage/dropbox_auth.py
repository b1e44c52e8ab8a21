"""Who dlcrun is to Dropbox, and how it connects: credentials, the token file, authorization, the SDK.

Credentials, in order (the SDK refreshes short-lived access tokens itself):

- ``DLCRUN_DROPBOX_REFRESH_TOKEN`` + ``DLCRUN_DROPBOX_APP_KEY`` (clusters, CI);
- ``DLCRUN_DROPBOX_ACCESS_TOKEN``: a legacy short-lived token, accepted with a warning;
- the token file ``dlcrun auth dropbox`` writes: ``$XDG_CONFIG_HOME/dlcrun/dropbox.json``
  (default ``~/.config/dlcrun/dropbox.json``), mode 0600, refused if others can read it.

Every value is stripped of surrounding whitespace when loaded and refused, naming its variable
or file (never the value), if a control character (CR, LF, ...) remains inside it; the secrets
are registered with ``dlcrun.errors.redact``, which every record, log line and printed error
passes through. Secrets are never written anywhere else and never appear in messages.

Two variables point the SDK at another endpoint (an emulation in tests, a TLS-inspecting
proxy); they travel to array tasks in the environment like the credentials:

- ``DLCRUN_DROPBOX_API_HOST``: ``host:port`` for both the API and the content host;
- ``DLCRUN_DROPBOX_CA_BUNDLE``: the only CA bundle trusted for Dropbox connections
  (it wins over ``REQUESTS_CA_BUNDLE``).

The transfers themselves are in ``storage/dropbox.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcrun.errors import ConfigError, StorageError, clean_credential, register_secret
from dlcrun.files import write_json

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)
ENV_APP_KEY = "DLCRUN_DROPBOX_APP_KEY"
ENV_REFRESH_TOKEN = "DLCRUN_DROPBOX_REFRESH_TOKEN"
ENV_ACCESS_TOKEN = "DLCRUN_DROPBOX_ACCESS_TOKEN"


AUTH_HINT = f"revoked or expired? run `dlcrun auth dropbox` again (or set {ENV_REFRESH_TOKEN} and {ENV_APP_KEY})"


@dataclass(frozen=True)
class Credentials:
    """What the SDK needs; the secrets are kept out of repr so a traceback cannot show them."""

    app_key: str = ""
    refresh_token: str = field(default="", repr=False)
    access_token: str = field(default="", repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        for secret in self.secrets():  # however they were made, errors and logs mask them
            register_secret(secret)

    def secrets(self) -> list[str]:
        return [s for s in (self.refresh_token, self.access_token) if s]


def token_path() -> Path:
    """``$XDG_CONFIG_HOME/dlcrun/dropbox.json``; XDG says to ignore a relative XDG_CONFIG_HOME."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "dlcrun" / "dropbox.json"


def _from_env(name: str) -> str:
    """A credential variable, stripped and checked (a control character inside it is an error
    naming the variable); "" when unset or blank."""
    return clean_credential(os.environ.get(name, ""), name, secret=name != ENV_APP_KEY)


def load_credentials() -> Credentials:
    """Credentials from the environment, else the token file; a clear error when there are none.

    Every value is stripped of surrounding whitespace (a CRLF env file leaves a CR behind) and
    refused, naming its variable or file, if a control character remains inside it."""
    env = {name: _from_env(name) for name in (ENV_REFRESH_TOKEN, ENV_ACCESS_TOKEN, ENV_APP_KEY)}
    if env[ENV_REFRESH_TOKEN]:
        if not env[ENV_APP_KEY]:
            raise ConfigError(f"{ENV_REFRESH_TOKEN} is set but {ENV_APP_KEY} is not: a refresh token needs its app key")
        return Credentials(env[ENV_APP_KEY], refresh_token=env[ENV_REFRESH_TOKEN], source=ENV_REFRESH_TOKEN)
    if env[ENV_ACCESS_TOKEN]:
        log.warning(
            "%s is a short-lived Dropbox token (hours): tasks that start after it expires will fail; "
            "run `dlcrun auth dropbox` for a refresh token",
            ENV_ACCESS_TOKEN,
        )
        return Credentials(env[ENV_APP_KEY], access_token=env[ENV_ACCESS_TOKEN], source=ENV_ACCESS_TOKEN)
    path = token_path()
    if path.is_file():
        return read_token_file(path)
    raise ConfigError(
        f"no Dropbox credentials: run `dlcrun auth dropbox` (writes {path}), "
        f"or set {ENV_REFRESH_TOKEN} and {ENV_APP_KEY}"
    )


def read_token_file(path: Path) -> Credentials:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path}: readable by others (mode {mode:o}); run `chmod 600 {path}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        app_key, refresh_token = str(data["app_key"]), str(data["refresh_token"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path}: not a dlcrun Dropbox token file; run `dlcrun auth dropbox` again") from None
    refresh_token = clean_credential(refresh_token, f"{path} (key refresh_token)")
    app_key = clean_credential(app_key, f"{path} (key app_key)", secret=False)
    if not (app_key and refresh_token):
        raise ConfigError(f"{path}: app_key or refresh_token is empty; run `dlcrun auth dropbox` again")
    return Credentials(app_key, refresh_token=refresh_token, source=str(path))


def write_token_file(app_key: str, refresh_token: str, account_id: str = "") -> Path:
    """Write the token file created 0600 (in a 0700 folder) and renamed into place."""
    path = token_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = {
        "app_key": app_key,
        "refresh_token": refresh_token,
        "account_id": account_id,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(path, record, mode=0o600)
    return path


def authorize(app_key: str, ask_code: Callable[[str], str]) -> tuple[Path, str]:
    """PKCE authorization with offline access: no app secret, a refresh token that does not expire.

    ``ask_code`` is shown the authorize URL and returns the code the user copied from it.
    Returns the token file written and the Dropbox account id.
    """
    import requests

    sdk = sdk_module()
    app_key = clean_credential(app_key, f"the app key (--app-key or {ENV_APP_KEY})", secret=False)
    if not app_key:
        raise ConfigError(f"no app key: pass --app-key or set {ENV_APP_KEY} (App Console -> your app -> App key)")
    flow = sdk.DropboxOAuth2FlowNoRedirect(app_key, use_pkce=True, token_access_type="offline")
    flow.requests_session = http_session()
    code = ask_code(flow.start()).strip()
    if not code:
        raise ConfigError("no authorization code entered; nothing was saved")
    try:
        result = flow.finish(code)  # never print it: its repr shows both tokens
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise StorageError(
            f"Dropbox did not accept the authorization code (HTTP {status}): codes are single-use and expire "
            "within minutes; run `dlcrun auth dropbox` again"
        ) from None
    except requests.RequestException as exc:
        raise StorageError(f"could not reach Dropbox to finish authorization ({type(exc).__name__})") from None
    if not result.refresh_token:
        raise StorageError("Dropbox returned no refresh token; the app must allow offline access")
    register_secret(result.access_token)
    refresh_token = clean_credential(result.refresh_token, "the refresh token Dropbox returned")
    return write_token_file(app_key, refresh_token, result.account_id), result.account_id


ENV_API_HOST = "DLCRUN_DROPBOX_API_HOST"
ENV_CA_BUNDLE = "DLCRUN_DROPBOX_CA_BUNDLE"


def sdk_module() -> Any:
    """The ``dropbox`` module, imported after DLCRUN_DROPBOX_API_HOST is applied.

    The SDK reads its hosts from the environment once, at import, so the override must be in
    place before the first import anywhere in the process.
    """
    host = os.environ.get(ENV_API_HOST)
    if host and "dropbox" not in sys.modules:
        os.environ["DROPBOX_API_HOST"] = host
        os.environ["DROPBOX_API_CONTENT_HOST"] = host
    try:
        import dropbox
        import dropbox.session
    except ImportError:
        raise ConfigError("the dropbox package is not installed: pip install -r requirements.lock") from None
    if host and {dropbox.session.API_HOST, dropbox.session.API_CONTENT_HOST} != {host}:
        raise ConfigError(
            f"{ENV_API_HOST}={host} was set after the dropbox SDK was imported (it uses "
            f"{dropbox.session.API_HOST}); set it before starting Python"
        )
    return dropbox


def http_session() -> requests.Session:
    """The SDK's pinned session, or one that trusts exactly DLCRUN_DROPBOX_CA_BUNDLE."""
    import requests

    bundle = os.environ.get(ENV_CA_BUNDLE)
    if not bundle:
        return sdk_module().create_session()
    if not Path(bundle).is_file():
        raise ConfigError(f"{ENV_CA_BUNDLE}={bundle}: no such file")

    class PinnedCA(requests.Session):
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override session.verify; this bundle wins.
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            merged = super().merge_environment_settings(*args, **kwargs)
            merged["verify"] = self.verify
            return merged

    session = PinnedCA()
    session.verify = bundle
    return session
