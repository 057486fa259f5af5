"""The local deployment's directory ($STRATA_HOME, default ``~/.strata``) and the options
``strata up`` remembers.

```
$STRATA_HOME/config.json               options of the last `strata up`
$STRATA_HOME/pageserver/               the page server's state directory
  pageserver.json                      written by the server once it serves (pid, listen, ...)
  auth/admin.token                     the local admin token (mode 0600)
$STRATA_HOME/objects/                  the local object store (storage "local")
$STRATA_HOME/logs/pageserver.log       the page server's output
$STRATA_HOME/run/pageserver.pid        pid of the page server `strata up` started
$STRATA_HOME/run/proxy.pid, proxy.json pid of the proxy; its pid and address once it listens
$STRATA_HOME/logs/proxy.log            the proxy's output
$STRATA_HOME/run/console.pid, console.json  pid of the web console; its pid and URL once it
                                       listens
$STRATA_HOME/logs/console.log          the console's output
$STRATA_HOME/computes/TENANT/BRANCH/   one compute (see compute/node.py); elsewhere when the
                                       postgres user cannot reach it (``Home.computes_dir``)
```
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

from common import supervisor
from common.durable import write_durably

DEFAULT_PORT: Final = 6400
DEFAULT_PROXY_PORT: Final = 6432
DEFAULT_CONSOLE_PORT: Final = 6480
LISTEN_HOST: Final = "127.0.0.1"
DEFAULT_DIR_NAME: Final = ".strata"  # in the user's home directory


@dataclass(frozen=True)
class Home:
    """Paths of one local deployment."""

    root: Path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Home:
        """``$STRATA_HOME``, else ``.strata`` in the user's home directory (``$HOME``, else
        the password database's), as an absolute path.

        Per user and not per working directory, so ``strata`` finds the same deployment
        from anywhere; root's is ``/root/.strata`` like any other user's.
        """
        given = environ.get("STRATA_HOME")
        if given:
            return cls(Path(given).expanduser().resolve())
        user_home = environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
        return cls((Path(user_home) / DEFAULT_DIR_NAME).resolve())

    @property
    def state_dir(self) -> Path:
        return self.root / "pageserver"

    @property
    def objects_dir(self) -> Path:
        return self.root / "objects"

    @property
    def log_file(self) -> Path:
        return self.root / "logs" / "pageserver.log"

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def ready_file(self) -> Path:
        return self.state_dir / "pageserver.json"

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / "auth" / "admin.token"

    @property
    def computes_dir(self) -> Path:
        """Where computes keep their mounts, caches and logs.

        $STRATA_COMPUTE_DIR if set; else ``computes`` here, if other users (the tenants'
        OS users) can pass through to it; else a directory of this home's own under
        /var/tmp (a home under a private directory such as /root is fine for the page
        server, not for PostgreSQL).
        """
        override = os.environ.get("STRATA_COMPUTE_DIR")
        if override:
            return Path(override).resolve()
        if all(os.stat(path).st_mode & 0o001
               for path in (self.root, *self.root.parents) if path.exists()):
            return self.root / "computes"
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"strata-computes-{digest}"

    @property
    def proxy_socket_dir(self) -> Path:
        """Where the proxy's unix socket for local clients lives: beside the computes,
        so every local user can reach it (`.proxy` is no tenant's name)."""
        return self.computes_dir / ".proxy"

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "pageserver.pid"

    @property
    def proxy_pid_file(self) -> Path:
        return self.root / "run" / "proxy.pid"

    @property
    def proxy_ready_file(self) -> Path:
        return self.root / "run" / "proxy.json"

    @property
    def proxy_state_file(self) -> Path:
        """Clients per branch, idle and suspended times, as the proxy last saw them."""
        return self.root / "run" / "proxy-state.json"

    @property
    def proxy_log_file(self) -> Path:
        return self.root / "logs" / "proxy.log"

    @property
    def console_pid_file(self) -> Path:
        return self.root / "run" / "console.pid"

    @property
    def console_ready_file(self) -> Path:
        return self.root / "run" / "console.json"

    @property
    def console_log_file(self) -> Path:
        return self.root / "logs" / "console.log"

    @property
    def lock_file(self) -> Path:
        return self.root / "run" / "lifecycle.lock"

    def ready_info(self) -> dict[str, Any] | None:
        """What the page server published in ``pageserver.json``; None if absent or torn."""
        return supervisor.ready_info(self.ready_file)

    def data_socket(self) -> str:
        """The unix socket of the page server's framed data plane for this home: in
        Linux's abstract namespace (computes run as other users, who cannot reach
        $STRATA_HOME), named after the home."""
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        return f"@strata-{digest}"

    def data_plane_address(self) -> str:
        """Where computes reach the running page server's framed data plane; "" (gRPC)
        if it serves none."""
        info = self.ready_info()
        socket = info.get("data_socket") if info else None
        return f"unix:{socket}" if isinstance(socket, str) and socket else ""

    def admin_token(self) -> str | None:
        """The local admin token, if the page server has created one."""
        try:
            return self.admin_token_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def server_address(self) -> str:
        """Where the local page server listens, or will listen once started."""
        info = self.ready_info()
        if info and isinstance(info.get("listen"), str):
            return str(info["listen"])
        return f"{LISTEN_HOST}:{UpOptions.load(self).port}"


@dataclass(frozen=True)
class UpOptions:
    """How ``strata up`` runs the page server; saved so a plain ``strata up`` repeats it."""

    storage: str = "local"  # local | s3
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_prefix: str = ""
    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_PORT + 1  # 0: any free port
    pitr_window: str = "24h"
    proxy_port: int = DEFAULT_PROXY_PORT  # 0: any free port
    suspend_timeout: str = "5m"  # a compute without clients this long is stopped
    tls_cert: str = ""  # the proxy's TLS certificate and key; "": made by `strata up`
    tls_key: str = ""
    require_tls: bool = False  # the proxy refuses clients without TLS
    console: bool = True  # start the web console (`strata console`)
    console_port: int = DEFAULT_CONSOLE_PORT  # 0: any free port
    data_plane: str = "unix"  # unix: computes use the framed unix socket | grpc (rfcs/0020)

    @classmethod
    def load(cls, home: Home) -> UpOptions:
        """The saved options, defaults for what is missing or unreadable."""
        try:
            saved = json.loads(home.config_file.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(saved, dict):
            return cls()
        defaults = asdict(cls())
        return cls(**{key: value for key, value in saved.items()
                      if key in defaults and type(value) is type(defaults[key])})

    def save(self, home: Home) -> None:
        """Write them to config.json atomically."""
        home.root.mkdir(parents=True, exist_ok=True)
        write_durably(home.config_file, (json.dumps(asdict(self), indent=2) + "\n").encode())

    def describe_storage(self, home: Home) -> str:
        """Where objects go, in the form the page server reports it."""
        if self.storage == "local":
            return f"local:{home.objects_dir}"
        url = self.storage_url(home)
        return f"{url.partition('?')[0]} @ {self.s3_endpoint or 'AWS'}"

    def storage_url(self, home: Home) -> str:
        """The page server's ``--storage`` value for these options."""
        if self.storage == "local":
            return str(home.objects_dir)
        url = f"s3://{self.s3_bucket}/{quote(self.s3_prefix.strip('/'))}"
        if self.s3_endpoint:
            url += "?" + urlencode({"endpoint": self.s3_endpoint})
        return url
