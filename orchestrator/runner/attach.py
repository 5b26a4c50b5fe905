"""Attach to an existing Ray cluster the way Ray's own CLI does, or say in one sentence why not.

`ray start --head --port=P` (Ray >= 2.50) turns token authentication on whenever a token exists on the head
(`~/.ray/auth_token`, written by `ray get-auth-token --generate` or by any earlier local `ray.init()`), and a
driver must then present the same token. Ray's `ray.init(address=...)` enables token mode by itself only for
`address=auto` (ray/_private/worker.py, `maybe_enable_token_auth_if_token_available`); with an explicit
host:port it connects without the token and retries `InvalidAuthToken` for about 30 s before a traceback.
Here the driver does what Ray's CLI does on every node: when RAY_AUTH_MODE is not set and a token is found
where Ray's token loader looks (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, ~/.ray/auth_token), token
mode is switched on for this process (a cluster without authentication accepts the token too). Then, before
`ray.init`, a TCP connect (5 s) and one GCS call tell an unreachable head and a refused token apart from
everything else, each as one sentence within seconds (exit 2, nothing written).

A head started bound to loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, whose GCS listens on 127.0.0.1 only)
is reached by connecting in Ray's loopback mode too: otherwise ray.init rewrites 127.0.0.1 to the routable
address (services.resolve_ip_for_localhost), where nothing listens.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ray._private import services

from orchestrator.errors import UsageError

CONNECT_TIMEOUT_S = 5.0


class AttachError(UsageError):
    """The cluster at cluster.address cannot be used from here (one sentence; nothing was written)."""


@dataclass(frozen=True)
class Head:
    """Where the driver connects: the GCS address, whether Ray's loopback mode must be on, and where the token came
    from (None: no token sent)."""

    address: str
    loopback: bool
    token_from: str | None


def token_source() -> str | None:
    """Where Ray's token loader will find a token, in its order (None: nowhere)."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH={path}" if Path(path).expanduser().is_file() else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def _enable_token_mode() -> None:
    """What `ray start` does when a token exists and RAY_AUTH_MODE is unset (authentication_token_setup.py)."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth  # noqa: PLC0415
    from ray._raylet import AuthenticationTokenLoader  # noqa: PLC0415

    _enable_token_auth()
    AuthenticationTokenLoader.instance().reset_cache()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _quiet_stderr():
    """Ray's C++ client logs each failed GCS call to fd 2; the sentence below says it once."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def resolve(address: str) -> Head:
    """The head at `address` (auto, host:port; ray:// is Ray Client and is passed through), checked reachable and
    accepting this driver's token. Raises AttachError (one sentence) otherwise."""
    key = f"cluster.address={address}"
    if address.startswith("ray://"):
        return Head(address=address, loopback=False, token_from=None)
    if address == "auto":
        found = services.get_ray_address_from_environment("auto", None)
        if found in (None, "auto"):
            raise AttachError(f"{key} found no running Ray cluster on this machine (no RAY_ADDRESS, no `ray start` "
                              f"recorded in /tmp/ray): start one with `ray start --head --port=6379`, or give the "
                              f"head as host:port.")
        address = found
    parsed = services.parse_address(address)
    if parsed is None:
        raise AttachError(f"{key} is not an address: give auto, host:port (the head's GCS port, 6379 by default) or "
                          f"ray://host:10001.")
    host, port_text = parsed
    try:
        port = int(port_text)
    except ValueError:
        raise AttachError(f"{key} has no valid port: give host:port (the head's GCS port, 6379 by default).") from None
    loopback, given = False, f"{host}:{port}"
    if services.is_localhost(host):
        # A head bound to loopback only listens on 127.0.0.1; Ray's default head listens on every interface and
        # ray.init connects to this machine's routable address.
        routable = services.get_node_ip_address()
        loopback = not _reachable(routable, port) and _reachable("127.0.0.1", port)
        host = "127.0.0.1" if loopback else routable
    if not (loopback or _reachable(host, port)):
        raise AttachError(f"{key}: nothing answers at {given} within {CONNECT_TIMEOUT_S:g} s; start the head "
                          f"with `ray start --head --port={port}` or check the address and the firewall.")
    gcs = f"{host}:{port}"
    source = None
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":  # set by the user: Ray's loader finds the token
        source = token_source()
        _check_gcs(gcs, key=key, token_from=source)
    elif os.environ.get("RAY_AUTH_MODE") is None and not _accepts(gcs, key=key):
        # The head requires a token: present the one Ray's CLI left here. Only then: a driver in token mode
        # also requires it of the workers that call back, which a head without authentication does not give them.
        source = token_source()
        if source is None:
            raise AttachError(f"{key}: the cluster requires token authentication and this machine has no token; copy "
                              f"the head's ~/.ray/auth_token here (or set RAY_AUTH_TOKEN to the output of "
                              f"`ray get-auth-token` on the head).")
        _enable_token_mode()
        _check_gcs(gcs, key=key, token_from=source)
    return Head(address=gcs, loopback=loopback, token_from=source)


def _accepts(gcs: str, *, key: str) -> bool:
    """Whether the head answers this driver without a token (False: it requires one)."""
    from ray.exceptions import AuthenticationError  # noqa: PLC0415

    try:
        _gcs_call(gcs, key=key)
    except AuthenticationError:
        return False
    return True


def _gcs_call(gcs: str, *, key: str) -> None:
    from ray._raylet import GcsClient  # noqa: PLC0415
    from ray.exceptions import RpcError  # noqa: PLC0415

    try:
        with _quiet_stderr():
            GcsClient(address=gcs)
    except RpcError as err:  # (AuthenticationError is not an RpcError: it reaches the caller)
        raise AttachError(f"{key}: {gcs} accepts connections but does not answer as a Ray head "
                          f"({str(err).splitlines()[0]}); give the head's GCS port (6379 by default).") from None


def _check_gcs(gcs: str, *, key: str, token_from: str | None) -> None:
    """One GCS call with this driver's token: a refused token (or none where one is required) is one sentence."""
    from ray.exceptions import AuthenticationError  # noqa: PLC0415

    try:
        _gcs_call(gcs, key=key)
    except AuthenticationError:
        if token_from is None:
            raise AttachError(f"{key}: the cluster requires token authentication and this machine has no token; copy "
                              f"the head's ~/.ray/auth_token here (or set RAY_AUTH_TOKEN to the output of "
                              f"`ray get-auth-token` on the head).") from None
        raise AttachError(f"{key}: the cluster refused the authentication token from {token_from}; use the head's "
                          f"token (`ray get-auth-token` on the head) in ~/.ray/auth_token or RAY_AUTH_TOKEN.") from None
