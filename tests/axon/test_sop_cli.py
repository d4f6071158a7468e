"""The artifact command lines: `scc package`, `scc inspect`, `axon verify` (--json), `scc rebuild` and
`synapse eval ARTIFACT.sop`, which evaluates only what Axon verified."""

from __future__ import annotations

import calendar
import json
import subprocess
import sys
from pathlib import Path

import pytest
import rfc8785

from axon import abi
from axon import cli as axon_cli
from axon.clikit import UsageError
from axon.envelope import PackageSpec, build
from axon.keys import write_key_file
from axon.ledger import authority, ops
from scc import cli as scc_cli
from scc.commands.package import parse_expiry
from synapse import artifacts
from synapse import cli as synapse_cli
from tests.artifact_fixtures import GROUP, NOW, POLICIES, World, compiled, make_world, set_leaf, tamper_cases

BOILER = POLICIES / "boiler-guard.json"
HOT = ["--telemetry", '{"pressure_bar": 97.5, "valve_open": false}', "--context", '{"mode": "AUTO"}']


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(NOW))
    monkeypatch.delenv("SOPCOS_KEY", raising=False)
    monkeypatch.delenv("SOPCOS_LEDGER", raising=False)
    monkeypatch.chdir(tmp_path)  # so that the commands below can name ledger.db, node.key, ...
    world = make_world(tmp_path)
    for name, who in (("author", world.author), ("node", world.node), ("outsider", world.outsider)):
        write_key_file(tmp_path / f"{name}.key", who.key, who.did)
    return world


def run(main, *argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def package(tmp_path, capsys, *extra, policy=BOILER, name="boiler.sop") -> Path:
    out = tmp_path / name
    code, _, err = run(scc_cli.main, "package", policy, "--key", "author.key", "-o", out,
                       "--ledger", "ledger.db", *extra, capsys=capsys)
    assert code == 0, err
    return out


# -- the whole path -------------------------------------------------------------------------------


def test_package_verify_and_evaluate(world, tmp_path, capsys):
    sop = package(tmp_path, capsys, "--register")
    code, out, err = run(axon_cli.main, "verify", sop, "--ledger", "ledger.db", capsys=capsys)
    assert code == 0 and "VERIFIED boiler-guard 1.2.0" in out and "all 19 passed" in out
    code, out, err = run(synapse_cli.main, "eval", sop, "--ledger", "ledger.db", *HOT, capsys=capsys)
    assert code == 0 and json.loads(out)["verdict"] == "HALT"
    assert "verified boiler-guard 1.2.0" in err and "development only" not in err


def test_unregistered_artifact_is_refused_everywhere(world, tmp_path, capsys):
    sop = package(tmp_path, capsys)  # no --register
    code, out, _ = run(axon_cli.main, "verify", sop, "--ledger", "ledger.db", "--json", capsys=capsys)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["error"]["code"] == "AXON-VERIFY-UNREGISTERED"
    assert report["passed"][-1] == "authority" and report["error"]["check"] == "registered"
    code, out, err = run(synapse_cli.main, "eval", sop, "--ledger", "ledger.db", *HOT, capsys=capsys)
    assert (code, out) == (1, "") and "AXON-VERIFY-UNREGISTERED" in err


def test_every_tampered_field_is_refused_and_never_evaluated(world, tmp_path, capsys, monkeypatch):
    sop = package(tmp_path, capsys, "--register", "--encrypt-for", GROUP)
    doc = json.loads(sop.read_bytes())
    built = []
    original = artifacts.Evaluator.from_wasm
    monkeypatch.setattr(artifacts.Evaluator, "from_wasm",
                        classmethod(lambda cls, *a, **k: built.append(1) or original(*a, **k)))
    for path, value, expected in tamper_cases(world, doc):
        sop.write_bytes(json.dumps(set_leaf(doc, path, value)).encode())
        code, out, err = run(synapse_cli.main, "eval", sop, "--ledger", "ledger.db",
                             "--key", "node.key", *HOT, capsys=capsys)
        assert (code, out) == (1, ""), path
        assert f"[{expected}]" in err, path
    assert built == []  # nothing was ever compiled, let alone evaluated
    sop.write_bytes(json.dumps(doc).encode())
    code, out, _ = run(synapse_cli.main, "eval", sop, "--ledger", "ledger.db",
                       "--key", "node.key", *HOT, capsys=capsys)
    assert code == 0 and json.loads(out)["verdict"] == "HALT" and built == [1]


def test_raw_wasm_is_development_only(world, tmp_path, capsys):
    wasm = tmp_path / "boiler.wasm"
    wasm.write_bytes(compiled())
    code, out, err = run(synapse_cli.main, "eval", wasm, *HOT, capsys=capsys)
    assert code == 0 and json.loads(out)["verdict"] == "HALT"
    assert "development only" in err and "unverified" in err


def test_encrypted_artifact_needs_the_node_key(world, tmp_path, capsys):
    sop = package(tmp_path, capsys, "--register", "--encrypt-for", GROUP)
    ledger = "ledger.db"
    code, out, err = run(synapse_cli.main, "eval", sop, "--ledger", ledger, *HOT, capsys=capsys)
    assert (code, out) == (1, "") and "AXON-VERIFY-DECRYPT-NO-KEY" in err
    code, out, err = run(synapse_cli.main, "eval", sop, "--ledger", ledger, "--key", "outsider.key",
                         *HOT, capsys=capsys)
    assert (code, out) == (1, "") and "AXON-VERIFY-DECRYPT-RECIPIENT" in err
    code, out, err = run(synapse_cli.main, "eval", sop, "--ledger", ledger, "--key", "node.key",
                         *HOT, capsys=capsys)
    assert code == 0 and json.loads(out)["verdict"] == "HALT" and "decrypted in memory" in err


def test_config_file(world, tmp_path, capsys):
    sop = package(tmp_path, capsys, "--register", "--encrypt-for", GROUP)
    (tmp_path / "node.toml").write_text('[ledger]\npath = "ledger.db"\n[node]\nkey = "node.key"\n'
                                        'installed = "installed.json"\n[limits]\nclock_skew_seconds = 60\n')
    code, out, _ = run(synapse_cli.main, "eval", sop, "--config", "node.toml", *HOT, capsys=capsys)
    assert code == 0 and json.loads(out)["verdict"] == "HALT"
    (tmp_path / "installed.json").write_text('{"boiler-guard": "2.0.0"}')
    code, out, err = run(synapse_cli.main, "eval", sop, "--config", "node.toml", *HOT, capsys=capsys)
    assert (code, out) == (1, "") and "AXON-VERIFY-ROLLBACK" in err
    (tmp_path / "bad.toml").write_text('[ledger]\npath = "ledger.db"\n[node]\nkeyfile = "node.key"\n')
    code, out, err = run(synapse_cli.main, "eval", sop, "--config", "bad.toml", *HOT, capsys=capsys)
    assert (code, out) == (2, "") and "node.keyfile: unknown key 'keyfile'" in err


def test_sop_without_a_ledger_is_a_usage_error(world, tmp_path, capsys):
    sop = package(tmp_path, capsys, "--register")
    code, out, err = run(synapse_cli.main, "eval", sop, *HOT, capsys=capsys)
    assert (code, out) == (2, "") and "--ledger" in err


# -- axon verify --------------------------------------------------------------------------------


def test_verify_json_success_and_superseded(world, tmp_path, capsys):
    sop = package(tmp_path, capsys, "--register")
    code, out, _ = run(axon_cli.main, "verify", sop, "--ledger", "ledger.db", "--json", capsys=capsys)
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["artifact"]["policy"] == "boiler-guard"
    assert report["artifact"]["authority_level"] == "LVL_3" and len(report["checks"]) == 19
    successor = build(_with_version(compiled(), "1.2.1"), world.author, PackageSpec("LVL_3", NOW))
    world.register(successor)
    supersede = ops.supersede_artifact(report["artifact"]["urn"], successor.urn)
    world.ledger.sign_and_submit(world.author, supersede, NOW)
    code, out, _ = run(axon_cli.main, "verify", sop, "--ledger", "ledger.db", "--json", capsys=capsys)
    error = json.loads(out)["error"]
    assert code == 1 and error["code"] == "AXON-VERIFY-SUPERSEDED" and error["successor"] == successor.urn


def _with_version(module: bytes, version: str, **meta_changes: object) -> bytes:
    """The module with its sopcos.meta edited (the section is last, docs/abi.md)."""
    meta = json.loads(abi.read_custom_sections(module, abi.META_SECTION)[0])
    meta.update(version=version, **meta_changes)
    start = module.rindex(b"\x0bsopcos.meta") - 1
    while module[start - 1] & 0x80 or module[start] != 0:  # back over the section's size to its id
        start -= 1
    return module[:start] + abi.custom_section(abi.META_SECTION, rfc8785.dumps(meta))


def test_rebuild(world, tmp_path, capsys):
    sop = package(tmp_path, capsys, "--register", "--encrypt-for", GROUP)
    ledger, key = "ledger.db", "node.key"
    code, out, _ = run(scc_cli.main, "rebuild", sop, BOILER, "--ledger", ledger, "--key", key, "--json",
                       capsys=capsys)
    result = json.loads(out)
    rebuild = result["rebuild"]
    assert code == 0 and result["ok"] and result["artifact"]["encrypted"], result
    assert rebuild["matches"] and rebuild["local_module"] == rebuild["artifact_module"], rebuild
    code, out, _ = run(scc_cli.main, "rebuild", sop, POLICIES / "tank-overfill.json", "--ledger", ledger,
                       "--key", key, capsys=capsys)
    assert code == 1 and "VERIFIED boiler-guard" in out and "rebuild    no: this source is not the one" in out
    assert not list(tmp_path.glob("*.wasm"))  # the rebuilt module stayed in memory


def test_rebuild_with_another_compiler_version_is_a_clear_no(world, tmp_path, capsys):
    old = _with_version(compiled(), "1.2.0", compiler="scc-0.0.9")
    envelope = build(old, world.author, PackageSpec("LVL_3", NOW))
    world.register(envelope)
    sop = tmp_path / "old.sop"
    sop.write_bytes(envelope.to_bytes())
    code, out, _ = run(scc_cli.main, "rebuild", sop, BOILER, "--ledger", "ledger.db", capsys=capsys)
    assert code == 1 and "cannot confirm: the artifact was built by scc-0.0.9" in out


def test_rebuild_verifies_first_and_reports_a_source_that_does_not_compile(world, tmp_path, capsys):
    sop = package(tmp_path, capsys, "--register")
    (tmp_path / "newer.json").write_text('{"boiler-guard": "99.0.0"}')
    code, out, err = run(scc_cli.main, "rebuild", sop, BOILER, "--ledger", "ledger.db", "--installed",
                         "newer.json", capsys=capsys)
    assert code == 1 and out == "" and "REFUSED" in err
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**json.loads(BOILER.read_text()), "default": "MAYBE"}))
    code, out, err = run(scc_cli.main, "rebuild", sop, broken, "--ledger", "ledger.db", capsys=capsys)
    assert code == 2 and out == "" and "/default" in err and "not rebuilt: 1 error(s)" in err
    code, _, err = run(scc_cli.main, "rebuild", sop, tmp_path / "nope.json", "--ledger", "ledger.db",
                       capsys=capsys)
    assert code == 2 and "nope.json" in err


def test_axon_verify_rebuild_points_at_scc_rebuild(world, tmp_path, capsys):
    """Axon does not compile: the old flag is a usage error that names the command that does."""
    sop = package(tmp_path, capsys, "--register")
    code, out, err = run(axon_cli.main, "verify", sop, "--ledger", "ledger.db", "--rebuild", BOILER,
                         capsys=capsys)
    assert code == 2 and out == ""
    assert f"scc rebuild {sop} {BOILER} --ledger PATH" in err


def test_verify_usage_errors(world, tmp_path, capsys):
    sop = package(tmp_path, capsys, "--register")
    assert run(axon_cli.main, "verify", sop, capsys=capsys)[0] == 2  # no ledger
    assert run(axon_cli.main, "verify", tmp_path / "nope.sop", "--ledger", "ledger.db",
               capsys=capsys)[0] == 2
    assert run(axon_cli.main, "verify", sop, "--ledger", "nope.db", capsys=capsys)[0] == 2


@pytest.mark.slow
def test_real_processes_and_exit_codes(world, tmp_path, capsys):
    sop = package(tmp_path, capsys, "--register")

    def axon(*args):
        return subprocess.run([sys.executable, "-m", "axon", *map(str, args)], capture_output=True,
                              cwd=tmp_path)

    done = axon("verify", sop, "--ledger", "ledger.db")
    assert done.returncode == 0, done.stderr
    sop.write_bytes(sop.read_bytes().replace(b'"LVL_3"', b'"LVL_2"'))
    done = axon("verify", sop, "--ledger", "ledger.db")
    assert done.returncode == 1 and b"AXON-VERIFY-SIGNATURE" in done.stderr, done.stderr
    assert axon("verify", "--help").returncode == 0


# -- scc package / inspect ------------------------------------------------------------------------


def test_package_refusals(world, tmp_path, capsys):
    out = tmp_path / "x.sop"
    bad = tmp_path / "bad.json"
    bad.write_text('{"sip": "001"}')
    key, ledger = "author.key", "ledger.db"
    assert run(scc_cli.main, "package", bad, "--key", key, "-o", out, capsys=capsys)[0] == 1
    assert run(scc_cli.main, "package", BOILER, "--key", "none.key", "-o", out, capsys=capsys)[0] == 2
    assert run(scc_cli.main, "package", BOILER, "--key", key, "-o", out, "--register", capsys=capsys)[0] == 2
    code, _, err = run(scc_cli.main, "package", BOILER, "--key", "outsider.key", "-o", out,
                       "--ledger", ledger, capsys=capsys)  # LVL_1 key, LVL_3 policy
    assert code == 2 and "holds LVL_1" in err
    code, _, err = run(scc_cli.main, "package", BOILER, "--key", key, "--kid", world.junior.did, "-o", out,
                       "--ledger", ledger, capsys=capsys)
    assert code == 2 and "another public key" in err
    code, _, err = run(scc_cli.main, "package", BOILER, "--key", key, "-o", out, "--encrypt-for",
                       "did:sopcos:group:nowhere", "--ledger", ledger, capsys=capsys)
    assert code == 2 and "--encrypt-for" in err
    assert not out.exists()


def test_package_refuses_a_policy_name_the_signer_may_not_publish_under(world, tmp_path, capsys, monkeypatch):
    """Issue 10: the ledger binds boiler-guard to its first registrant and level (rule 12). With --ledger,
    scc package refuses before signing what --register and Axon would refuse later, by the same rule."""
    package(tmp_path, capsys, "--register")  # the author (LVL_3) binds boiler-guard at LVL_3
    source = json.loads(BOILER.read_text())
    lowered = tmp_path / "lowered.json"
    lowered.write_text(json.dumps({**source, "version": "9.0.0", "authority_level": "LVL_1"}))
    out = tmp_path / "hijack.sop"
    cases = [("outsider.key", "belongs to " + world.author.did),  # LVL_1: not the owner
             ("author.key", "is bound to LVL_3")]  # the owner, but below the name's level
    for key, why in cases:
        code, _, err = run(scc_cli.main, "package", lowered, "--key", key, "-o", out, "--ledger", "ledger.db",
                           capsys=capsys)
        assert code == 1 and why in err and "[AXON-LEDGER-POLICY-NAME]" in err, err
        assert not out.exists()
    # One rule, not a copy of it: without the ledger's function the same request is packaged.
    monkeypatch.setattr(authority, "may_publish_policy", lambda *args: None)
    assert run(scc_cli.main, "package", lowered, "--key", "outsider.key", "-o", out, "--ledger", "ledger.db",
               capsys=capsys)[0] == 0


def test_package_json_summary_and_expiry(world, tmp_path, capsys):
    out = tmp_path / "b.sop"
    code, stdout, _ = run(scc_cli.main, "package", BOILER, "--key", "author.key", "-o", out,
                          "--expires", "90d", "--storage-hint", "s3://vault/plant/", "--json", capsys=capsys)
    summary = json.loads(stdout)
    assert code == 0 and summary["expires_at"] == NOW + 90 * 86400 and summary["registered"] is False
    assert json.loads(out.read_bytes())["distribution"]["storage_hint"] == "s3://vault/plant/"
    assert parse_expiry("2027-01-31T00:00:00Z", NOW) == calendar.timegm((2027, 1, 31, 0, 0, 0))
    assert parse_expiry("12h", NOW) == NOW + 43200
    for bad in ("tomorrow", "2027-01-31T00:00:00", "2020-01-01T00:00:00Z", "0d"):
        with pytest.raises(UsageError):
            parse_expiry(bad, NOW)


def test_inspect(world, tmp_path, capsys):
    plain = package(tmp_path, capsys)
    sealed = package(tmp_path, capsys, "--encrypt-for", GROUP, name="sealed.sop")
    code, out, _ = run(scc_cli.main, "inspect", plain, capsys=capsys)
    assert code == 0 and "NOT VERIFIED" in out and "boiler-guard 1.2.0" in out
    assert "halt-overpressure -> HALT" in out and "pressure_bar (number, 0..250, bar)" in out
    code, out, _ = run(scc_cli.main, "inspect", sealed, capsys=capsys)
    assert code == 0 and f"AES-256-GCM for {GROUP}" in out and "halt-overpressure" not in out
    code, out, _ = run(scc_cli.main, "inspect", sealed, "--json", capsys=capsys)
    shown = json.loads(out)
    assert shown["verified"] is False and shown["module"] is None
    assert list(shown["envelope"]) == ["header", "meta", "encryption", "distribution", "payload", "signature"]
    assert shown["envelope"]["payload"]["blob"].endswith("bytes>")
    (tmp_path / "junk.sop").write_text("{}")
    code, _, err = run(scc_cli.main, "inspect", tmp_path / "junk.sop", capsys=capsys)
    assert code == 1 and "AXON-VERIFY-SCHEMA" in err
