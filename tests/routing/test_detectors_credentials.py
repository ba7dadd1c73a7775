"""API keys, tokens, JWTs, private keys and passwords: issuer formats and validators."""

from __future__ import annotations

import base64
import json

import pytest

from tests.routing.factories import entities

RANDOM = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3"


def jwt(header: dict, payload: dict | None = None) -> str:
    def b64(part: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(payload or {'sub': '1234567890'})}.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    "text,entity",
    [
        (f"key sk-{RANDOM}", "openai_api_key"),
        (f"OPENAI_API_KEY=sk-proj-{RANDOM[:40]}_x-{RANDOM[:20]}", "openai_api_key"),
        ("sk-svcacct-" + RANDOM, "openai_api_key"),
        ("sk-ant-api03-" + RANDOM + "-AA", "anthropic_api_key"),
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        ("creds ASIAY34FZKBOKMUTVV7A,", "aws_access_key"),
        ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "github_token"),
        ("gho_" + RANDOM[:36], "github_token"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW", "github_token"),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack_token"),
        ("legacy xoxp-1234-5678-9012-abc123def456", "slack_token"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe_secret_key"),
        ("rk_test_51H8x2Abcdefghijklmn", "stripe_secret_key"),
        ("Authorization: Bearer " + jwt({"alg": "HS256", "typ": "JWT"}), "jwt"),
        ("unsigned " + jwt({"alg": "none"}).rsplit(".", 1)[0] + ".", "jwt"),
    ],
)
def test_credentials_are_found_by_format(text: str, entity: str) -> None:
    found = entities(text)
    assert found[entity] == 1
    assert set(found) <= {entity, "secret_assignment"}  # "KEY=value" is also an assignment


@pytest.mark.parametrize(
    "text",
    [
        "sk-learn-is-a-great-library-for-ml",  # no digits: a name, not a key
        "the ask-" + RANDOM,  # "sk-" inside a word
        "pk_live_4eC39HqLyjWDarjtT1zdp7dc",  # Stripe publishable keys are public
        "AKIA is the prefix of an access key id",
        "gh_pages and ghp_short",
        "xoxb-not-a-token",
        "eyJhbGciOi is half a token",
        jwt({"typ": "JWT"}),  # header without "alg"
        "eyJub3QganNvbg.eyJzdWIiOiIxIn0.sig",  # header is not JSON
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "reservation.release_all_the_things_now",
    ],
)
def test_credential_look_alikes_do_not_fire(text: str) -> None:
    assert entities(text) == {}


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi0Z1BjP5CEWmRr500P\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
        "-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oY6kBaqt3e9XoAoGCCqG",
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi0Z1BjP5",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF8uDzEBCAC5mTkj6ZVbNTcVmOUpHk4bUq6K8Y2Gx5v7",
    ],
)
def test_private_key_blocks_are_found(text: str) -> None:
    assert entities(text) == {"private_key": 1}


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
        "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa",
        "paste your -----BEGIN RSA PRIVATE KEY----- here",  # a header alone is no key
    ],
)
def test_non_private_pem_blocks_do_not_fire(text: str) -> None:
    assert "private_key" not in entities(text)


@pytest.mark.parametrize(
    "text",
    [
        "postgres://app:S3cr3t!x@db.internal:5432/app",
        "mysql://admin:Tr0ub4dor&3@db/app",
        "redis://:hunter2-Xy9@cache:6379/0",
        "amqp://guest:p@ss-W0rd@rabbit/",
    ],
)
def test_passwords_inside_connection_urls_are_found(text: str) -> None:
    assert entities(text) == {"url_password": 1}


@pytest.mark.parametrize(
    "text",
    [
        "postgres://user:password@localhost/db",
        "redis://:${REDIS_PASSWORD}@cache:6379",
        "mysql://root:<password>@db/app",
        "postgres://user:****@db/app",
        "https://example.com/path?q=a:b@c",
        "http://localhost:8080/health",
    ],
)
def test_placeholder_url_passwords_do_not_fire(text: str) -> None:
    assert "url_password" not in entities(text)


@pytest.mark.parametrize(
    "text",
    [
        'DB_PASSWORD="Xk9#mP2$vL7q"',
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        '{"api_key": "a8f5f167f44f4964e6c998dee827110c"}',
        "client_secret: 9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        "export API-KEY=Zq8!vR3#tY6&wU1p",
        "passwd := 'Tr0ub4dor&3xyz'",
    ],
)
def test_high_entropy_secret_assignments_are_found(text: str) -> None:
    assert entities(text) == {"secret_assignment": 1}


@pytest.mark.parametrize(
    "text",
    [
        "password: the usual one",
        "password = 'changeme'",
        "token = tokenizer.encode(text)",
        "api_key = os.environ['OPENAI_API_KEY']",
        "password = config.db_password",
        "secret = get_secret()",
        "api_key: ${OPENAI_API_KEY}",
        "password=your_password_here",
        "max_tokens = 256",
        "primary key = user_id2",
        "token_count: 12345678",
        "password = correcthorsebattery",  # no digit or symbol: not judged random enough
    ],
)
def test_low_entropy_or_code_assignments_do_not_fire(text: str) -> None:
    assert "secret_assignment" not in entities(text)
