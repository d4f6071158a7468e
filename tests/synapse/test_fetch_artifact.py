"""Artifacts reach nodes (issue 12 item 5): fetching an artifact from its storage hint, against a real
local HTTP server, and a CMD load of a URN the node does not hold, end to end through `synapse run`:
fetched, verified through Axon, stored and served; oversize, wrong URN and failed verification refused
with their codes."""

from __future__ import annotations

import copy
import http.server
import ssl
import threading
from pathlib import Path

import pytest

from axon.envelope import URN_PREFIX
from axon.ledger import ops
from axon.messaging import Message, seal
from synapse.service.fetch import (
    FetchFailed,
    FetchHintError,
    FetchTooLarge,
    FetchWrongUrn,
    artifact_location,
    fetch_artifact,
)
from tests.mosquitto import write_tls
from tests.service_support import HALT, Plant, Server, records, sidecar_config
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # a real HTTP server, and a synapse run process


class ArtifactServer:
    """A real HTTP server on a free loopback port: files from `root`, and a few misbehaving routes."""

    def __init__(self, root: Path, tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: (certificate, key) to serve https."""
        root_dir = root

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root_dir), **kwargs)

            def do_GET(self):  # noqa: N802 (the name http.server calls)
                self.server.requests.append(self.path)
                if self.path.startswith("/endless/"):  # no Content-Length, never ends
                    self.send_response(200)
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(b"x" * 65536)
                    except OSError:
                        return
                if self.path.startswith("/moved/"):
                    self.send_response(302)
                    self.send_header("Location", "/art/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.requests = []
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, tls))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.base = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A plant with three artifacts: v2 registered, one never registered, and their files served."""
    directory = tmp_path_factory.mktemp("fetch")
    plant = Plant(directory)
    v2, v2_urn = plant.artifact("2.0.0")
    unregistered, unregistered_urn = plant.artifact("3.0.0", register=False)
    art = directory / "www" / "art"
    art.mkdir(parents=True)
    for data, urn in ((v2, v2_urn), (unregistered, unregistered_urn)):
        (art / f"{urn.removeprefix(URN_PREFIX)}.sop").write_bytes(data)
    (art / "renamed.sop").write_bytes(v2)
    (art / "junk.sop").write_bytes(b"not an artifact")
    server = ArtifactServer(directory / "www")
    yield plant, server, art, (v2, v2_urn), (unregistered, unregistered_urn)
    server.close()


def test_a_directory_hint_is_the_file_named_by_the_urn(world):
    plant, server, art, (v2, urn), _ = world
    fetched = fetch_artifact(urn, f"{server.base}/art/", max_bytes=1 << 20, timeout=10)
    assert fetched.data == v2 and fetched.location.endswith(f"/art/{urn.removeprefix(URN_PREFIX)}.sop")
    assert fetch_artifact(urn, str(art) + "/", max_bytes=1 << 20, timeout=10).data == v2
    assert fetch_artifact(urn, f"file://{art}/renamed.sop", max_bytes=1 << 20, timeout=10).data == v2


def test_a_credential_in_the_hint_never_reaches_the_location(world):
    _, server, _, (_, urn), _ = world
    hint = server.base.replace("http://", "http://reader:s3cret@") + "/art/?token=abc"
    with pytest.raises(FetchWrongUrn) as refused:  # with a query it names a file (here: a listing)
        fetch_artifact(urn, hint, max_bytes=1 << 20, timeout=10)
    assert "s3cret" not in str(refused.value) and "token" not in str(refused.value)
    fetched = fetch_artifact(urn, server.base.replace("http://", "http://reader:s3cret@") + "/art/",
                             max_bytes=1 << 20, timeout=10)
    assert "s3cret" not in fetched.location and "reader" not in fetched.location


def test_https_with_the_plants_ca_and_not_without_it(world, tmp_path):
    _, _, art, (v2, urn), _ = world
    ca, cert, key = write_tls(tmp_path)
    (tmp_path / "other").mkdir()
    other_ca, _, _ = write_tls(tmp_path / "other")
    server = ArtifactServer(art.parent, tls=(cert, key))
    try:
        hint = f"{server.base}/art/"
        assert fetch_artifact(urn, hint, max_bytes=1 << 20, timeout=10, ca_file=ca).data == v2
        with pytest.raises(FetchFailed, match="CERTIFICATE_VERIFY_FAILED"):
            fetch_artifact(urn, hint, max_bytes=1 << 20, timeout=10, ca_file=other_ca)
        with pytest.raises(FetchFailed, match="CERTIFICATE_VERIFY_FAILED"):  # the system's CAs: no
            fetch_artifact(urn, hint, max_bytes=1 << 20, timeout=10)
    finally:
        server.close()


@pytest.mark.parametrize("hint, limit, error, words", [
    ("{base}/art/", 1000, FetchTooLarge, "declared, over the 1000-byte limit"),
    ("{base}/endless/x.sop", 200_000, FetchTooLarge, "more than 200000 bytes arrived"),
    ("{art}/", 1000, FetchTooLarge, "over the 1000-byte limit"),
    ("{base}/art/renamed-missing.sop", 1 << 20, FetchFailed, "HTTP 404"),
    ("{base}/moved/x.sop", 1 << 20, FetchFailed, "redirects are not followed"),
    ("{art}/nothing-here.sop", 1 << 20, FetchFailed, "No such file"),
    ("http://127.0.0.1:1/art/", 1 << 20, FetchFailed, "ConnectError"),
    ("{base}/art/junk.sop", 1 << 20, FetchWrongUrn, "not an artifact envelope"),
    ("s3://vault/art/", 1 << 20, FetchHintError, "http(s) URLs, file URLs and absolute paths only"),
    ("relative/art/", 1 << 20, FetchHintError, "absolute paths only"),
])
def test_refusals_say_what_and_why(world, hint, limit, error, words):
    _, server, art, (_, urn), _ = world
    with pytest.raises(error, match=None) as refused:
        fetch_artifact(urn, hint.format(base=server.base, art=art), max_bytes=limit, timeout=10)
    assert words in str(refused.value)


def test_the_wrong_artifact_under_the_right_name_is_refused(world):
    _, server, art, (_, v2_urn), (unregistered, other_urn) = world
    (art / "swapped").mkdir(exist_ok=True)
    (art / "swapped" / f"{v2_urn.removeprefix(URN_PREFIX)}.sop").write_bytes(unregistered)
    with pytest.raises(FetchWrongUrn) as refused:
        fetch_artifact(v2_urn, f"{server.base}/art/swapped/", max_bytes=1 << 20, timeout=10)
    assert f"holds {other_urn}, not the {v2_urn}" in str(refused.value)
    with pytest.raises(FetchHintError, match="not a content-addressed artifact URN"):
        artifact_location("urn:sopcos:something-else", f"{server.base}/art/")


def test_cmd_load_fetches_verifies_stores_and_serves(world, tmp_path):
    plant, server, art, (v2, v2_urn), (_, unregistered_urn) = world
    v1, _ = plant.artifact("1.0.0")
    (tmp_path / "v1.sop").write_bytes(v1)
    feed = tmp_path / "feed.jsonl"
    feed.touch()
    plant = copy.copy(plant)
    plant.dir = tmp_path  # this node's own store, log and config; the module's ledger stays
    config = sidecar_config(plant, tmp_path / "v1.sop", source=str(feed), interval=0,
                            commands={"enabled": True, "poll_interval": 0.2, "fetch_timeout": 10})
    node = Server(tmp_path, config, command="run").wait_ready()
    try:
        def load(urn: str, hint: str | None) -> None:
            body = {"command": "load", "urn": urn, **({"storage_hint": hint} if hint else {})}
            message = Message.new("CMD", body, plant.now)
            plant.submit(plant.admin, ops.message(plant.node.did,
                                                  seal(plant.node.key.public_key, message).to_dict()))

        def outcomes() -> list[dict]:
            return [r["data"] for r in records(plant) if r.get("event") == "command"]

        load(v2_urn, f"{server.base}/art/")
        [done] = wait_until(outcomes, what="the load carried out")
        assert (done["status"], done["urn"], done["version"]) == ("ok", v2_urn, "2.0.0")
        assert done["fetched_from"].startswith(server.base) and done["bytes"] == len(v2)
        answer = node.client.post("/v1/evaluate", json={"policy": "boiler-guard", "telemetry": HALT,
                                                        "context": {"mode": "AUTO"}}).json()
        assert answer["urn"] == v2_urn and answer["verdict"] == "HALT"  # stored, and served
        stored = node.client.get(f"/v1/artifacts/{v2_urn}").json()
        assert stored["served"] and stored["active"]

        load(unregistered_urn, f"{server.base}/art/")  # fetched, but Axon refuses it
        load(URN_PREFIX + "1" * 64, f"{server.base}/art/")  # nothing there: 404
        load(URN_PREFIX + "0" * 64, None)
        results = wait_until(lambda: outcomes()[1:] if len(outcomes()) >= 4 else None,
                             what="three more loads")
        unregistered, missing, no_hint = results
        assert (unregistered["status"], unregistered["code"]) == ("failed", "AXON-VERIFY-UNREGISTERED")
        assert missing["status"] == "failed" and missing["code"] == "SYNAPSE-FETCH-FAILED"
        assert no_hint["status"] == "failed" and "no storage_hint" in no_hint["reason"]
        listed = {a["urn"] for a in node.client.get("/v1/artifacts").json()["artifacts"]}
        assert unregistered_urn not in listed  # nothing Axon refused was stored
    finally:
        assert node.stop() == 0
