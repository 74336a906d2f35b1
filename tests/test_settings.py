"""Settings precedence (CLI > environment > config.yaml) and validation messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from asr.settings import DEFAULT_CONFIG_PATH, DEFAULT_MODEL, SettingsError, load_settings


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_project_config_loads_and_matches_builtin_defaults():
    settings = load_settings(DEFAULT_CONFIG_PATH, environ={})
    assert settings.model == DEFAULT_MODEL
    assert settings.batch_size == 4
    assert settings.feature_cache.enable is False
    assert settings.server.port == 7860


def test_precedence_cli_over_env_over_file(tmp_path):
    config = write_config(tmp_path, "batch_size: 3\npreload_audio: false\ndevice: cpu\n")
    env = {"SEACO_BATCH_SIZE": "5", "PRELOAD_AUDIO": "true"}
    assert load_settings(config, environ={}).batch_size == 3
    from_env = load_settings(config, environ=env)
    assert (from_env.batch_size, from_env.preload_audio, from_env.device) == (5, True, "cpu")
    from_cli = load_settings(config, environ=env, overrides={"batch_size": 7, "preload_audio": None})
    assert from_cli.batch_size == 7
    assert from_cli.preload_audio is True  # None means "flag not given"


def test_nested_keys_from_env_and_file(tmp_path):
    config = write_config(tmp_path, "feature_cache:\n  enable: true\n  max_size_mb: 64\n")
    env = {"SEACO_FEATURE_CACHE_MAX_SIZE_MB": "32", "SEACO_BATCH_ALLOWED_DIRS": "/a,/b"}
    settings = load_settings(config, environ=env)
    assert settings.feature_cache.enable is True
    assert settings.feature_cache.max_size_mb == 32
    assert settings.batch.allowed_dirs == ["/a", "/b"]


def test_unrelated_environment_variables_are_ignored(tmp_path):
    """Another program's LOG_LEVEL=warn, MODEL or DEVICE must neither stop nor steer the app."""
    config = write_config(tmp_path, "device: cpu\n")
    foreign = {"LOG_LEVEL": "warn", "MODEL": "gpt-4o", "DEVICE": "gpu", "BATCH_SIZE": "lots",
               "SERVER_PORT": "0", "FP16": "sometimes"}
    settings = load_settings(config, environ=foreign)
    assert (settings.log_level, settings.model, settings.device) == ("INFO", DEFAULT_MODEL, "cpu")
    assert (settings.batch_size, settings.server.port, settings.precision) == (4, 7860, "fp32")
    ours = load_settings(config, environ={**foreign, "SEACO_LOG_LEVEL": "warning", "SEACO_DEVICE": "auto"})
    assert (ours.log_level, ours.device) == ("WARNING", "auto")


def test_every_setting_has_a_prefixed_variable_and_preload_audio_keeps_its_old_name(tmp_path):
    from asr.settings import SCHEMA, env_name

    assert all(env_name(key).startswith("SEACO_") for key in SCHEMA)
    config = write_config(tmp_path, "")
    assert load_settings(config, environ={"PRELOAD_AUDIO": "true"}).preload_audio is True
    both = {"PRELOAD_AUDIO": "true", "SEACO_PRELOAD_AUDIO": "false"}
    assert load_settings(config, environ=both).preload_audio is False  # the prefixed name wins


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("batchsize: 4\n", ["unknown setting 'batchsize'"]),
        ("feature_cache:\n  max_size: 4\n", ["unknown setting 'feature_cache.max_size'"]),
        ("device: gpu\n", ["'device'", "one of auto, cuda, cpu"]),
        ("batch_size: 0\n", ["'batch_size'", ">= 1"]),
        ("batch_size: two\n", ["'batch_size'", "an integer"]),
        ("fp16: maybe\n", ["'fp16'", "true or false"]),
        ("precision: fp8\n", ["'precision'", "one of fp32, bf16, fp16, int8"]),
        ("server:\n  port: 70000\n", ["'server.port'", "<= 65535"]),
        ("tuning:\n  sizes: [2, 0]\n", ["'tuning.sizes'", "positive integers"]),
        ("- just\n- a list\n", ["must hold a mapping"]),
        ("batch_size: [\n", ["not valid YAML"]),
    ],
)
def test_bad_config_names_key_and_allowed_values(tmp_path, text, fragments):
    config = write_config(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_settings(config, environ={})
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_bad_env_value_names_the_variable(tmp_path):
    config = write_config(tmp_path, "{}\n")
    with pytest.raises(SettingsError, match="environment variable PRELOAD_AUDIO"):
        load_settings(config, environ={"PRELOAD_AUDIO": "sometimes"})


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_every_key_in_project_config_is_commented():
    """Each leaf setting in config.yaml carries a one-line comment directly above it."""
    lines = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert lines[number - 1].strip().startswith("#"), f"no comment above: {line!r}"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused(tmp_path, value):
    config = write_config(tmp_path, "{}\n")
    with pytest.raises(SettingsError, match="finite number"):
        load_settings(config, environ={"SEACO_INPUT_SEGMENT_S": value})


def test_readme_points_to_every_setting():
    """A key a user cannot find might as well not exist: config.yaml comments every key (above);
    the README's table names every top-level key or section (`section.*`), so none is forgotten."""
    from asr.settings import PROJECT_ROOT, SCHEMA

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    names = {key.split(".")[0] + (".*" if "." in key else "") for key in SCHEMA}
    unnamed = sorted(name for name in names if f"`{name}`" not in readme)
    assert not unnamed, f"README.md does not name: {unnamed}"


def test_on_off_flags_switch_both_ways(tmp_path):
    """--no-x turns off what config.yaml turns on; leaving both out lets the file decide."""
    import launch
    from asr.system.console import engine_overrides

    config = write_config(tmp_path, "precision: int8\npreload_audio: true\ntimestamps: true\n")

    def settings_from(*argv: str):
        return load_settings(config, environ={}, overrides=engine_overrides(launch.parse_args(list(argv))))

    off = settings_from("--no-preload-audio", "--no-timestamps", "--precision", "fp32")
    assert (off.precision, off.preload_audio, off.timestamps) == ("fp32", False, False)
    kept = settings_from()
    assert (kept.precision, kept.preload_audio, kept.timestamps) == ("int8", True, True)
    assert settings_from("--precision", "bf16").precision == "bf16"


def test_old_precision_switches_still_work_and_say_they_are_deprecated(tmp_path, caplog):
    """`fp16: true` / `int8: true` (file, SEACO_ variable or --flag) read as `precision`, each
    source in its turn, with one warning naming the new key; contradictions are refused."""
    import launch
    from asr.system.console import engine_overrides

    def settings_from(text: str, environ: dict[str, str] | None = None, argv: tuple[str, ...] = ()):
        config = write_config(tmp_path, text)
        overrides = engine_overrides(launch.parse_args(list(argv)))
        return load_settings(config, environ=environ or {}, overrides=overrides)

    with caplog.at_level(logging.WARNING, logger="asr.settings"):
        assert settings_from("int8: true\n").precision == "int8"
    assert any("'int8'" in r.message and "deprecated" in r.message and "precision: int8" in r.message
               for r in caplog.records)
    assert settings_from("fp16: true\n").precision == "fp16"
    assert settings_from("int8: true\n", argv=("--no-int8",)).precision == "fp32"  # a later source wins
    assert settings_from("precision: bf16\n", argv=("--no-int8",)).precision == "bf16"  # not int8: kept
    assert settings_from("", environ={"SEACO_FP16": "1"}, argv=("--precision", "int8")).precision == "int8"
    assert settings_from("precision: fp32\nint8: false\n").precision == "fp32"
    for text, argv, fragment in (("precision: bf16\nint8: true\n", (), "disagree"),
                                 ("fp16: true\nint8: true\n", (), "both on"),
                                 ("", ("--precision", "bf16", "--fp16"), "disagree")):
        with pytest.raises(SettingsError, match=fragment):
            settings_from(text, argv=argv)


def test_yaml_off_means_off_for_text_settings(tmp_path):
    """YAML reads `off` as false: `punctuation: off` must not become a model called "False"."""
    config = write_config(tmp_path, "punctuation: off\nvad: off\nspeakers:\n  count: off\n")
    settings = load_settings(config, environ={})
    assert (settings.punctuation, settings.vad, settings.speakers.count) == ("off", "off", "off")
