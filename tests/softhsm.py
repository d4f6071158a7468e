"""A real SoftHSM2 token per test: its own config file and token directory under tmp_path.

    with SoftHSM(tmp_path) as hsm:          # a fresh token labelled "sopcos", user PIN in hsm.pin_file
        uri = hsm.uri("node")              # pkcs11:token=sopcos;object=node?module-path=...&pin-source=...
        env = hsm.env                      # for a child process: SOFTHSM2_CONF points at this token's config

SoftHSM2 reads SOFTHSM2_CONF when the module is initialised, and python-pkcs11 initialises it once per
process, so entering finalises the module in this process (ending every session on it) and the next
key loaded initialises it again under this token's config; leaving finalises it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
USER_PIN = "4321"
SO_PIN = "87654321"
INSTALL = "install SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2; .ci/run does)"


class SoftHSM:
    def __init__(self, tmp_path: Path, label: str = "sopcos") -> None:
        util = shutil.which("softhsm2-util")
        if util is None or not MODULE.is_file():
            raise AssertionError(f"softhsm2-util or {MODULE} is missing: {INSTALL}")
        self.label = label
        self.module = str(MODULE)
        self.dir = tmp_path / "softhsm"
        (self.dir / "tokens").mkdir(parents=True)
        self.conf = self.dir / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {self.dir / 'tokens'}\nobjectstore.backend = file\n"
                             "log.level = ERROR\nslots.removable = false\n")
        self.pin_file = self.dir / "pin"
        self.pin_file.write_text(USER_PIN + "\n")
        self.pin_file.chmod(0o600)
        self.env = {**os.environ, "SOFTHSM2_CONF": str(self.conf)}
        subprocess.run([util, "--init-token", "--free", "--label", label, "--pin", USER_PIN,
                        "--so-pin", SO_PIN], env=self.env, check=True, capture_output=True)
        self._previous: str | None = None

    def uri(self, obj: str, pin: str | None = None) -> str:
        """The key `obj` in this token; the PIN from pin_file, or pin-value=`pin` when given."""
        secret = f"pin-value={pin}" if pin is not None else f"pin-source=file://{self.pin_file}"
        return f"pkcs11:token={self.label};object={obj}?module-path={self.module}&{secret}"

    def __enter__(self) -> SoftHSM:
        self._previous = os.environ.get("SOFTHSM2_CONF")
        os.environ["SOFTHSM2_CONF"] = str(self.conf)
        self._finalise()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = self._previous
        self._finalise()

    def _finalise(self) -> None:
        from axon.pkcs11_token import open_module

        open_module(self.module).finalize()
