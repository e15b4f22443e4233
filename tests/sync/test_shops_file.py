"""`pslab serve --shops FILE` (docs/design/service.md#many-shops): reading the shops file, and
each way it can be wrong, said without a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from postscript_audience_lab.lab.cli import app
from postscript_audience_lab.sync.commands.shops_file import ShopsFileError, read_shops
from postscript_audience_lab.sync.service.intake import Credentials
from tests.processes import unwrapped

SECRETS = {
    "ALPHA_KEY": "sk_alpha_Secret0",
    "ALPHA_WRITE_KEY": "wk_alpha_Secret1",
    "BETA_KEY": "sk_beta_Secret2",
    "BETA_SHARED": "shh_beta_Secret3",
}
ALPHA = '[shops.alpha]\nsecret_key_env = "ALPHA_KEY"\nwrite_key_env = "ALPHA_WRITE_KEY"\n'


def shops_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shops.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ShopsFileError) as refused:
        read_shops(path, SECRETS if environ is None else environ)
    message = str(refused.value)
    assert not [value for value in SECRETS.values() if value in message], message
    return message


def test_each_shop_gets_its_key_and_credentials_from_variables_or_files(tmp_path: Path) -> None:
    (tmp_path / "beta.key").write_text("sk_beta_from_file\nignored\n")
    path = shops_file(
        tmp_path,
        ALPHA + '[shops.beta]\nsecret_key_file = "beta.key"\nshared_secret_env = "BETA_SHARED"\n',
    )

    alpha, beta = read_shops(path, SECRETS)

    assert (alpha.name, alpha.secret_key) == ("alpha", "sk_alpha_Secret0")
    assert alpha.credentials == Credentials(write_key="wk_alpha_Secret1")
    assert (beta.name, beta.secret_key) == ("beta", "sk_beta_from_file")  # from the file's folder
    assert beta.credentials == Credentials(shared_secret="shh_beta_Secret3")
    assert "Secret" not in repr(alpha) + repr(beta)


def test_a_missing_file_says_which(tmp_path: Path) -> None:
    assert "cannot read --shops" in refusal(tmp_path / "absent.toml")


def test_a_file_that_is_not_toml_says_where(tmp_path: Path) -> None:
    assert "is not TOML (" in refusal(shops_file(tmp_path, "[shops.alpha\n"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "names no shop"),
        ("[shops]\n", "names no shop"),
        ('port = 1\n[shops.alpha]\nsecret_key_env = "ALPHA_KEY"\n', "unknown key 'port'"),
        ("shops = 1\n", "names no shop"),
        ("[shops]\nalpha = 1\n", "shop alpha: write it as a table"),
    ],
)
def test_a_file_without_shop_tables_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refusal(shops_file(tmp_path, text))


@pytest.mark.parametrize("name", ["Alpha", "a.b", "..", "a/b", "", "x" * 65, "café"])
def test_a_shop_name_must_be_a_safe_path_segment(tmp_path: Path, name: str) -> None:
    text = ALPHA.replace("[shops.alpha]", f'[shops."{name}"]')

    assert "is not a path segment: use 1 to 64 of a-z, 0-9, _ and -" in refusal(
        shops_file(tmp_path, text)
    )


def test_an_unknown_key_is_refused_naming_it(tmp_path: Path) -> None:
    text = ALPHA.replace("secret_key_env", "secret_key_evn")

    assert "shop alpha: unknown key 'secret_key_evn'" in refusal(shops_file(tmp_path, text))


def test_a_secret_given_both_ways_is_refused(tmp_path: Path) -> None:
    text = ALPHA + 'write_key_file = "alpha.write"\n'

    assert "shop alpha: give write_key_env or write_key_file, not both" in refusal(
        shops_file(tmp_path, text)
    )


@pytest.mark.parametrize("value", ["1", '""', "[]"])
def test_a_source_that_is_not_a_name_is_refused(tmp_path: Path, value: str) -> None:
    text = f"[shops.alpha]\nsecret_key_env = {value}\nwrite_key_env = 'ALPHA_WRITE_KEY'\n"

    assert "shop alpha: secret_key_env must be the name of an environment variable" in refusal(
        shops_file(tmp_path, text)
    )


def test_a_shop_without_a_postscript_key_is_refused(tmp_path: Path) -> None:
    text = '[shops.alpha]\nwrite_key_env = "ALPHA_WRITE_KEY"\n'

    assert "shop alpha: no Postscript key" in refusal(shops_file(tmp_path, text))


@pytest.mark.parametrize("value", [None, "", "  "])
def test_an_unset_or_empty_variable_names_the_shop_and_the_variable(
    tmp_path: Path, value: str | None
) -> None:
    environ = {name: secret for name, secret in SECRETS.items() if name != "ALPHA_WRITE_KEY"}
    if value is not None:
        environ["ALPHA_WRITE_KEY"] = value

    message = refusal(shops_file(tmp_path, ALPHA), environ)

    assert message == (
        "shop alpha: environment variable ALPHA_WRITE_KEY (write_key_env) is not set or empty"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "shop alpha: cannot read secret_key_file {path}: No such file or directory"),
        (b"", "shop alpha: secret_key_file {path} is empty"),
        (b"\n\nsk_on_line_3\n", "shop alpha: secret_key_file {path} is empty"),
        (b"\xffsk_alpha_Secret0", "shop alpha: secret_key_file {path} is not UTF-8 text"),
    ],
)
def test_an_unreadable_or_empty_file_names_the_shop_and_the_file(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    key = tmp_path / "alpha.key"
    if content is not None:
        key.write_bytes(content)
    text = ALPHA.replace('secret_key_env = "ALPHA_KEY"', 'secret_key_file = "alpha.key"')

    assert refusal(shops_file(tmp_path, text)) == expected.format(path=key)


def test_a_shop_without_a_segment_credential_needs_insecure_no_auth(tmp_path: Path) -> None:
    path = shops_file(tmp_path, '[shops.alpha]\nsecret_key_env = "ALPHA_KEY"\n')

    assert "shop alpha: no credential for Segment" in refusal(path)
    (alpha,) = read_shops(path, SECRETS, insecure=True)
    assert not alpha.credentials.required


def test_two_shops_on_one_postscript_key_are_refused(tmp_path: Path) -> None:
    text = ALPHA + ALPHA.replace("[shops.alpha]", "[shops.beta]")

    assert "shops alpha and beta have the same Postscript key" in refusal(
        shops_file(tmp_path, text)
    )


# -- the command -------------------------------------------------------------------------


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    environ = SECRETS if env is None else env
    result = CliRunner().invoke(app, ["serve", "--port", "0", *args], env=environ)
    return result.exit_code, unwrapped(result.output)


def test_a_bad_shops_file_is_a_usage_error_that_starts_nothing(tmp_path: Path) -> None:
    path = shops_file(tmp_path, ALPHA)

    code, output = serve(tmp_path, "--shops", str(path), "--state-dir", str(tmp_path), env={})

    assert code == 2
    assert "shop alpha: environment variable ALPHA_KEY (secret_key_env) is not set" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shops.toml"]


@pytest.mark.parametrize(
    "option", [["--state", "x.sqlite"], ["--write-key", "wk"], ["--webhook-url", "https://x/"]]
)
def test_options_for_one_shop_are_refused_with_shops(tmp_path: Path, option: list[str]) -> None:
    path = shops_file(tmp_path, ALPHA)

    code, output = serve(tmp_path, "--shops", str(path), *option)

    assert code == 2
    assert f"{option[0]} is for one shop; with --shops each shop's is in the shops file" in output


def test_a_state_dir_that_is_not_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    path = shops_file(tmp_path, ALPHA)

    code, output = serve(tmp_path, "--shops", str(path), "--state-dir", str(tmp_path / "no"))

    assert code == 2
    assert "is not a folder" in output


def test_state_dir_without_shops_is_a_usage_error(tmp_path: Path) -> None:
    code, output = serve(tmp_path, "--state-dir", str(tmp_path), "--insecure-no-auth")

    assert code == 2
    assert "--state-dir goes with --shops" in output
