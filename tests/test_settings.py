"""Specification tests for sdxl_mcp.settings (docs/SETTINGS.md).

Every test runs in an empty temporary cwd with no SDXL_MCP_* / PEXELS_API_KEY
variables, so a developer's environment or ``.env`` never leaks in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from sdxl_mcp.errors import SdxlMcpError, SettingsError
from sdxl_mcp.settings import Settings, default_output_dir, load_settings

SECRET = "pexels-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.upper().startswith("SDXL_MCP_") or name.upper() == "PEXELS_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- defaults

DEFAULTS: list[Any] = [
    ("base_model", "stabilityai/stable-diffusion-xl-base-1.0"),
    ("refiner_model", "stabilityai/stable-diffusion-xl-refiner-1.0"),
    ("vae_model", None),
    ("device", "auto"),
    ("precision", "auto"),
    ("fp32_min_vram_gb", 20),
    ("allow_cpu", False),
    ("preload", True),
    ("max_queue", 8),
    ("max_wait_s", 50),
    ("generation_timeout_s", 600),
    ("pexels_api_key", None),
    ("pexels_base_url", "https://api.pexels.com/v1"),
    ("http_host", "127.0.0.1"),
    ("http_port", 8000),
    ("http_token", None),
]


@pytest.mark.parametrize(("field", "expected"), DEFAULTS)
def test_default_matches_design_table(field: str, expected: Any) -> None:
    assert getattr(load_settings(), field) == expected


def test_default_output_dir_is_absolute_user_data_dir() -> None:
    settings = load_settings()
    assert settings.output_dir.is_absolute()
    assert settings.output_dir == default_output_dir().expanduser().resolve()


def test_default_log_dir_is_logs_under_cwd(tmp_path: Path) -> None:
    assert load_settings().log_dir == (tmp_path / "logs").resolve()


def test_default_refiner_is_enabled() -> None:
    assert load_settings().refiner_enabled is True


def test_default_http_host_is_loopback() -> None:
    assert load_settings().http_host_is_loopback is True


# --------------------------------------------------------------------------- sources


@pytest.mark.parametrize(
    ("env_name", "raw", "field", "expected"),
    [
        ("SDXL_MCP_BASE_MODEL", "tiny-random", "base_model", "tiny-random"),
        (
            "SDXL_MCP_VAE_MODEL",
            "madebyollin/sdxl-vae-fp16-fix",
            "vae_model",
            "madebyollin/sdxl-vae-fp16-fix",
        ),
        ("SDXL_MCP_DEVICE", "cuda:1", "device", "cuda:1"),
        ("SDXL_MCP_DEVICE", "CPU", "device", "cpu"),
        ("SDXL_MCP_PRECISION", "fp16", "precision", "fp16"),
        ("SDXL_MCP_FP32_MIN_VRAM_GB", "40", "fp32_min_vram_gb", 40.0),
        ("SDXL_MCP_ALLOW_CPU", "true", "allow_cpu", True),
        ("SDXL_MCP_PRELOAD", "0", "preload", False),
        ("SDXL_MCP_MAX_QUEUE", "3", "max_queue", 3),
        ("SDXL_MCP_MAX_WAIT_S", "10", "max_wait_s", 10.0),
        ("SDXL_MCP_GENERATION_TIMEOUT_S", "30", "generation_timeout_s", 30.0),
        (
            "SDXL_MCP_PEXELS_BASE_URL",
            "http://127.0.0.1:9999",
            "pexels_base_url",
            "http://127.0.0.1:9999",
        ),
        ("SDXL_MCP_HTTP_HOST", "0.0.0.0", "http_host", "0.0.0.0"),
        ("SDXL_MCP_HTTP_PORT", "9000", "http_port", 9000),
    ],
)
def test_prefixed_env_var_is_read(
    monkeypatch: pytest.MonkeyPatch, env_name: str, raw: str, field: str, expected: Any
) -> None:
    monkeypatch.setenv(env_name, raw)
    assert getattr(load_settings(), field) == expected


def test_unprefixed_env_var_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_QUEUE", "3")
    assert load_settings().max_queue == 8


def test_relative_output_dir_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SDXL_MCP_OUTPUT_DIR", "images")
    assert load_settings().output_dir == (tmp_path / "images").resolve()


def test_home_relative_output_dir_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXL_MCP_OUTPUT_DIR", "~/sdxl-images")
    output_dir = load_settings().output_dir
    assert output_dir.is_absolute()
    assert "~" not in str(output_dir)


def test_dotenv_file_in_cwd_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SDXL_MCP_MAX_QUEUE=3\nSDXL_MCP_DEVICE=cpu\n")
    settings = load_settings()
    assert (settings.max_queue, settings.device) == (3, "cpu")


def test_dotenv_file_may_hold_unrelated_variables(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SOMETHING_ELSE=1\nSDXL_MCP_MAX_QUEUE=3\n")
    assert load_settings().max_queue == 3


def test_env_var_wins_over_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SDXL_MCP_MAX_QUEUE=3\n")
    monkeypatch.setenv("SDXL_MCP_MAX_QUEUE", "5")
    assert load_settings().max_queue == 5


def test_keyword_override_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXL_MCP_MAX_QUEUE", "5")
    assert load_settings(max_queue=2).max_queue == 2


@pytest.mark.parametrize(
    ("env_name", "field"),
    [
        ("SDXL_MCP_VAE_MODEL", "vae_model"),
        ("SDXL_MCP_HTTP_TOKEN", "http_token"),
        ("SDXL_MCP_PEXELS_API_KEY", "pexels_api_key"),
    ],
)
def test_empty_optional_value_means_none(
    monkeypatch: pytest.MonkeyPatch, env_name: str, field: str
) -> None:
    monkeypatch.setenv(env_name, "")
    assert getattr(load_settings(), field) is None


# --------------------------------------------------------------------------- pexels key


@pytest.mark.parametrize("env_name", ["PEXELS_API_KEY", "SDXL_MCP_PEXELS_API_KEY"])
def test_pexels_key_is_read_from_env(monkeypatch: pytest.MonkeyPatch, env_name: str) -> None:
    monkeypatch.setenv(env_name, SECRET)
    key = load_settings().pexels_api_key
    assert isinstance(key, SecretStr)
    assert key.get_secret_value() == SECRET


def test_plain_pexels_key_is_read_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"PEXELS_API_KEY={SECRET}\n")
    key = load_settings().pexels_api_key
    assert key is not None
    assert key.get_secret_value() == SECRET


def test_prefixed_pexels_key_wins_over_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEXELS_API_KEY", "plain-key")
    monkeypatch.setenv("SDXL_MCP_PEXELS_API_KEY", SECRET)
    key = load_settings().pexels_api_key
    assert key is not None
    assert key.get_secret_value() == SECRET


@pytest.mark.parametrize("raw", ["", "   "])
def test_empty_pexels_key_means_none(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("PEXELS_API_KEY", raw)
    assert load_settings().pexels_api_key is None


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda s: repr(s.pexels_api_key), id="repr-key"),
        pytest.param(lambda s: str(s.pexels_api_key), id="str-key"),
        pytest.param(repr, id="repr-settings"),
        pytest.param(str, id="str-settings"),
        pytest.param(lambda s: s.model_dump_json(), id="json-dump"),
    ],
)
def test_pexels_key_is_not_echoed(monkeypatch: pytest.MonkeyPatch, render: Any) -> None:
    monkeypatch.setenv("PEXELS_API_KEY", SECRET)
    assert SECRET not in render(load_settings())


KEY_REFUSED = "contains spaces or characters a key cannot have: copy it again from pexels.com/api."


@pytest.mark.parametrize("env_name", ["PEXELS_API_KEY", "SDXL_MCP_PEXELS_API_KEY"])
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(f"{SECRET} extra", id="inner-space"),
        pytest.param(f"{SECRET}\r\nX-Injected: 1", id="header-injection"),
        pytest.param(f"{SECRET}\tx", id="tab"),
        pytest.param(f"{SECRET}é", id="non-ascii"),
        pytest.param(f"{SECRET}\x7f", id="control"),
    ],
)
def test_pexels_key_that_cannot_be_sent_stops_start_up_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, env_name: str, bad: str
) -> None:
    monkeypatch.setenv(env_name, bad)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message == (
        f"invalid setting SDXL_MCP_PEXELS_API_KEY (or PEXELS_API_KEY): {KEY_REFUSED}"
    )
    assert SECRET not in message and SECRET not in repr(info.value)
    assert info.value.__cause__ is None


def test_pexels_key_passed_as_an_override_is_checked_too() -> None:
    with pytest.raises(SettingsError, match="PEXELS_API_KEY") as info:
        load_settings(pexels_api_key=f"{SECRET} {SECRET}")
    assert SECRET not in str(info.value)


def test_pexels_key_surrounding_whitespace_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEXELS_API_KEY", f"  {SECRET}\n")
    key = load_settings().pexels_api_key
    assert key is not None and key.get_secret_value() == SECRET


URL_REFUSED = "must be an http(s) URL such as https://api.pexels.com/v1."


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://example.com/v1",
        "api.pexels.com/v1",  # no scheme
        "https://",  # no host
        "http:///v1",
        "https://api.pexels.com/ v1",
        "https://[::1/v1",  # unclosed IPv6 bracket
        "file:///etc/passwd",
    ],
)
def test_pexels_base_url_must_be_http_with_a_host(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("SDXL_MCP_PEXELS_BASE_URL", bad)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"invalid setting SDXL_MCP_PEXELS_BASE_URL: {URL_REFUSED}")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://api.pexels.com/v1", "https://api.pexels.com/v1"),
        ("  http://127.0.0.1:9999/v1 ", "http://127.0.0.1:9999/v1"),
        ("HTTPS://proxy.example.com/pexels/", "HTTPS://proxy.example.com/pexels/"),
        ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
    ],
)
def test_pexels_base_url_accepts_http_and_https(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: str
) -> None:
    monkeypatch.setenv("SDXL_MCP_PEXELS_BASE_URL", raw)
    assert load_settings().pexels_base_url == expected


def test_http_token_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXL_MCP_HTTP_TOKEN", SECRET)
    settings = load_settings()
    assert isinstance(settings.http_token, SecretStr)
    assert settings.http_token.get_secret_value() == SECRET
    assert SECRET not in repr(settings)


# --------------------------------------------------------------------------- invalid values

# (env var, bad value, a word of what it accepts)
INVALID: list[Any] = [
    pytest.param("SDXL_MCP_MAX_QUEUE", "abc", "integer", id="max-queue-abc"),
    pytest.param("SDXL_MCP_MAX_QUEUE", "-1", "greater than or equal to 0", id="max-queue-negative"),
    pytest.param("SDXL_MCP_DEVICE", "tpu", "cuda", id="device-tpu"),
    pytest.param("SDXL_MCP_PRECISION", "fp8", "fp16", id="precision-fp8"),
    pytest.param("SDXL_MCP_HTTP_PORT", "70000", "65535", id="http-port-70000"),
    pytest.param("SDXL_MCP_ALLOW_CPU", "maybe", "boolean", id="allow-cpu-maybe"),
    pytest.param("SDXL_MCP_MAX_WAIT_S", "0", "greater than 0", id="max-wait-zero"),
    pytest.param("SDXL_MCP_MAX_QUEUE", "a\nb", "integer", id="value-with-newline"),
]


@pytest.mark.parametrize(("env_name", "raw", "accepts"), INVALID)
def test_invalid_value_raises_one_line_settings_error(
    monkeypatch: pytest.MonkeyPatch, env_name: str, raw: str, accepts: str
) -> None:
    monkeypatch.setenv(env_name, raw)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert env_name in message
    assert accepts in message


def test_invalid_value_in_dotenv_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SDXL_MCP_PRECISION=fp8\n")
    with pytest.raises(SettingsError, match="SDXL_MCP_PRECISION"):
        load_settings()


def test_settings_error_is_an_actionable_error_with_a_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SDXL_MCP_MAX_QUEUE", "abc")
    with pytest.raises(SdxlMcpError) as info:
        load_settings()
    assert info.value.code == "invalid_settings"
    assert info.value.__cause__ is None


# --------------------------------------------------------------------------- derived


@pytest.mark.parametrize(
    ("raw", "enabled"),
    [
        ("", False),
        ("   ", False),
        ("stabilityai/stable-diffusion-xl-refiner-1.0", True),
        ("/models/refiner", True),
    ],
)
def test_refiner_enabled_follows_refiner_model(
    monkeypatch: pytest.MonkeyPatch, raw: str, enabled: bool
) -> None:
    monkeypatch.setenv("SDXL_MCP_REFINER_MODEL", raw)
    assert load_settings().refiner_enabled is enabled


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_http_host_is_loopback(monkeypatch: pytest.MonkeyPatch, host: str, loopback: bool) -> None:
    monkeypatch.setenv("SDXL_MCP_HTTP_HOST", host)
    assert load_settings().http_host_is_loopback is loopback


def test_settings_class_reads_env_without_load_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXL_MCP_MAX_QUEUE", "4")
    assert Settings().max_queue == 4


# --------------------------------------------------------------------------- processes


def _run_python(args: list[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **extra_env}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_exits_non_zero_with_one_stderr_line_on_invalid_setting(tmp_path: Path) -> None:
    proc = _run_python(["-m", "sdxl_mcp", "gpu"], tmp_path, SDXL_MCP_MAX_QUEUE="abc")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "SDXL_MCP_MAX_QUEUE" in lines[0]
    assert proc.stdout == ""


def test_light_modules_do_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sdxl_mcp.schemas, sdxl_mcp.settings, sdxl_mcp.errors, sys; "
        "import sdxl_mcp.service.facade; "
        "print('torch' in sys.modules)"
    )
    proc = _run_python(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_the_server_imports_httpx_only_if_the_mcp_sdk_does(tmp_path: Path) -> None:
    """httpx is for stock searches: imported on the first one, not at start-up."""
    code = (
        "import sys, mcp.server.mcpserver; sdk = 'httpx' in sys.modules; "
        "import sdxl_mcp.entrypoints.cli.main, sdxl_mcp.entrypoints.mcp.server; "
        "print(sdk, 'httpx' in sys.modules)"
    )
    proc = _run_python(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    sdk_loaded, after = proc.stdout.split()
    assert after == sdk_loaded


def test_input_dirs_are_a_comma_separated_list_of_absolute_folders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SDXL_MCP_INPUT_DIRS", f"{tmp_path / 'a'}, {tmp_path / 'b'}")
    assert load_settings().input_dirs == [tmp_path / "a", tmp_path / "b"]


def test_a_relative_input_dir_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SDXL_MCP_INPUT_DIRS", "photos")
    with pytest.raises(SettingsError, match=r"SDXL_MCP_INPUT_DIRS: folders must be absolute"):
        load_settings()
