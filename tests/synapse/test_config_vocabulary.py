"""One configuration vocabulary (issue 14 item 5): `synapse serve`, `synapse run` and the artifact loader
(`synapse eval --config`) read the same sections and keys, refuse unknown ones with the dotted key, and
say what is wrong with a value in a sentence (pydantic's own report never reaches the user)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from synapse import artifacts
from synapse.cli import main as synapse_main
from synapse.commands import eval as eval_cmd
from synapse.commands import run as run_cmd
from synapse.commands import serve as serve_cmd
from synapse.service.config import FLAG_KEYS, ServiceConfig, load_config
from synapse.service.errors import ConfigError
from tests.synapse_wat import meta, policy_module

SHARED = """\
[server]
port = 9100
[ledger]
path = "state/ledger.db"
follow_interval = 2
[node]
key = "keys/node.key"
installed = "state/installed.json"
[store]
path = "state/store"
[decision_log]
path = "state/decisions"
[limits]
max_artifact_bytes = 4096
clock_skew_seconds = 60
[sidecar]
artifacts = ["boiler-guard.sop"]
source = "telemetry.jsonl"
"""


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    for command in (serve_cmd, run_cmd, eval_cmd):
        command.register(sub)
    return parser.parse_args(argv)


def test_serve_run_and_the_loader_read_the_same_file_the_same_way(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text(SHARED)
    served = serve_cmd.config_from_args(parse("serve", "--config", str(config)))
    ran = serve_cmd.config_from_args(parse("run", "--config", str(config)))
    loaded = artifacts.read_settings(parse("eval", "m.sop", "--telemetry", "{}", "--config", str(config)))
    assert served == ran == loaded == load_config(config)
    assert served.ledger.path == tmp_path / "state/ledger.db"
    assert served.node.key == tmp_path / "keys/node.key"
    assert served.node.installed == tmp_path / "state/installed.json"
    assert served.sidecar.artifacts == [tmp_path / "boiler-guard.sop"] and served.server.port == 9100
    verify = loaded.limits.verify_config()
    assert (verify.max_artifact_bytes, verify.clock_skew_seconds) == (4096, 60)


def test_each_flag_sets_the_key_it_names_in_every_command(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text(SHARED)
    flags = ("--config", str(config), "--ledger", "other.db", "--node-key", "other.key")
    for args in (parse("serve", *flags), parse("run", *flags, "--source", "-", "--interval", "0"),
                 parse("eval", "m.sop", "--telemetry", "{}", *flags)):
        settings = (artifacts.read_settings if args.run is eval_cmd.run else serve_cmd.config_from_args)(args)
        # A flag's relative path is the working directory's, not the config file's.
        assert (settings.ledger.path, settings.node.key) == (Path("other.db"), Path("other.key"))
    assert (settings.sidecar.source, settings.sidecar.interval) == ("telemetry.jsonl", 1.0)  # eval: the file
    ran = serve_cmd.config_from_args(parse("run", *flags, "--source", "-", "--interval", "0"))
    assert (ran.sidecar.source, ran.sidecar.interval) == ("-", 0.0)
    # The loader's old --key is the same flag as --node-key.
    old = artifacts.read_settings(parse("eval", "m.sop", "--telemetry", "{}", "--key", "k.key"))
    assert old.node.key == Path("k.key")
    # Every flag of the table names a real section.key.
    for dotted in FLAG_KEYS.values():
        section, key = dotted.split(".")
        assert key in type(getattr(ServiceConfig(), section)).model_fields, dotted


@pytest.mark.parametrize("command", ["serve", "run"])
@pytest.mark.parametrize("text, message", [
    ("[servr]\nport = 1\n", "unknown section [servr] (known: server, ledger, node, store, decision_log"),
    ("[server]\nprot = 1\n", "server.prot: unknown key 'prot' in server (known: host, port,"),
    ("[node]\nkeyfile = 'n.key'\n", "node.keyfile: unknown key 'keyfile' in node (known: key, installed)"),
    ("[sidecar.commands]\nenable = true\n",
     "sidecar.commands.enable: unknown key 'enable' in sidecar.commands (known: enabled,"),
    ('[[auth.tokens]]\nname = "a"\nsha256 = "b"\nscopes = []\nscope = "admin"\n',
     "auth.tokens[0].scope: unknown key 'scope' in auth.tokens[0]"),
])
def test_unknown_sections_and_keys_are_refused_with_their_dotted_key(tmp_path, capsys, command, text,
                                                                      message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert synapse_main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: {message}" in err, err


@pytest.mark.parametrize("text, sentence", [
    ('[server]\nport = "80"\n', "server.port: expected an integer, got a string"),
    ("[server]\nworkers = 1.5\n", "server.workers: expected an integer, got a number"),
    ("[limits]\nrate = true\n", "limits.rate: expected a number, got a boolean"),
    ("[server]\naccess_log = 1\n", "server.access_log: expected true or false, got an integer"),
    ("[decision_log]\nmask = 'telemetry.badge'\n", "decision_log.mask: expected a list, got a string"),
    ("[sidecar]\nartifacts = ['a.sop', 7]\n", "sidecar.artifacts[1]: expected a path (a non-empty string)"),
    ('ledger = "ledger.db"\n', "ledger: expected a table, got a string ([ledger] is a section)"),
    ("[sidecar]\ncontext = 2024-01-01\n", "sidecar.context: expected a table, got a date or time"),
    ('[[auth.tokens]]\nname = "x"\nscopes = ["admin"]\n', "auth.tokens[0]: missing sha256 (required)"),
])
def test_a_wrong_value_is_one_sentence_naming_file_and_key(tmp_path, text, sentence):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value) == f"{config}: {sentence}"
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no pydantic chain behind it


def test_the_loader_reports_a_bad_file_as_a_setup_error(tmp_path, capsys):
    config = tmp_path / "node.toml"
    config.write_text("[limits]\nclock_skew_seconds = -1\n")
    sop = tmp_path / "m.sop"
    sop.write_bytes(b"{}")
    assert synapse_main(["eval", str(sop), "--telemetry", "{}", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "limits.clock_skew_seconds must be >= 0" in err and "Traceback" not in err


def test_eval_takes_its_time_limit_from_limits_eval_timeout_ms(tmp_path, capsys):
    """synapse eval's --deadline-ms was a second name for the service's limits.eval_timeout_ms."""
    module = tmp_path / "spin.wasm"
    module.write_bytes(policy_module("(loop $spin (br $spin)) (i32.const 1)", meta()))
    config = tmp_path / "node.toml"
    config.write_text("[limits]\neval_timeout_ms = 5\n")
    spin = ["eval", str(module), "--telemetry", "{}", "--fuel", str(10**15), "--config", str(config)]
    for flags, ms in [((), 5), (("--eval-timeout-ms", "7"), 7), (("--deadline-ms", "9"), 9)]:
        assert synapse_main([*spin, *flags]) == 0
        decision = json.loads(capsys.readouterr().out)
        assert decision["reason"] == f"sandbox: deadline exceeded ({ms} ms per evaluation)", flags
