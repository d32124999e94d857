"""`dreamtray serve` facing mistakes: weak tokens off loopback, a token file others can read, TLS files that do
not load. Real `serve` processes on 127.0.0.1; the Host check and /openapi.json are in test_engine_faults."""

from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner
from remote_helpers import ServeProcess, free_port, self_signed_certificate

from dreamtray.cli.serve import serve_command


@pytest.mark.parametrize("token", ["x", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "short-but-varied-token-1234"])
def test_off_loopback_a_weak_token_is_refused_with_the_way_to_make_one(tmp_path, token):
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    result = CliRunner().invoke(
        serve_command, ["--host", "0.0.0.0", "--port", str(free_port()), "--token-file", str(token_file)]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"The token in {token_file} is too weak" in result.output and "at least 32" in result.output
    assert "secrets.token_urlsafe(32)" in result.output


def test_a_token_file_others_can_read_is_warned_about_and_made_private(tmp_path):
    token_file = tmp_path / "box" / "token"  # where ServeProcess points --token-file
    token_file.parent.mkdir()
    token_file.write_text("k" * 10 + "abcdefghijklmnopqrstuvwxyz0123456789\n")
    token_file.chmod(0o644)
    server = ServeProcess(tmp_path / "box")
    try:
        server.wait_ready()
    finally:
        server.stop()
    log = server.log.read_text()
    assert f"{token_file} could be read by other users (mode 0644)" in log and "now private" in log
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    first = self_signed_certificate(tmp_path_factory.mktemp("tls-a"))
    second = self_signed_certificate(tmp_path_factory.mktemp("tls-b"))
    garbage = tmp_path_factory.mktemp("tls-bad") / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    return first, second, garbage


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("garbage certificate", "TLS certificate {cert}: not a PEM certificate"),
        ("key of another certificate", "TLS private key {key}: it is not the key of the certificate {cert}"),
        ("certificate as the key", "TLS private key {key}: cannot be used with {cert}"),
        ("key as the certificate", "TLS certificate {cert}: not a PEM certificate"),
    ],
)
def test_tls_files_that_do_not_load_are_named_and_nothing_claims_to_listen(tmp_path, certificates, case, message):
    (cert_a, key_a), (_, key_b), garbage = certificates
    cert, key = {
        "garbage certificate": (garbage, key_a),
        "key of another certificate": (cert_a, key_b),
        "certificate as the key": (cert_a, cert_a),
        "key as the certificate": (key_a, key_a),
    }[case]
    server = ServeProcess(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https")
    assert server.process.wait(timeout=60) == 1
    log = server.log.read_text()
    assert message.format(cert=cert, key=key) in log, log
    assert "listening" not in log and "Traceback" not in log
