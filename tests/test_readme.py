"""The README tells the truth about the settings."""

from pathlib import Path

from visit_tracker.settings import ENV_PREFIX, Settings

README = Path(__file__).parent.parent / "README.md"


def test_the_settings_table_lists_every_setting_with_its_default() -> None:
    """Each setting has a README row naming its variable, its flag and its real default."""
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in README.read_text().splitlines()
        if line.startswith(f"| `{ENV_PREFIX}")
    }
    assert set(rows) == {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        row = rows[f"{ENV_PREFIX}{name.upper()}"]
        assert f"`--{name.replace('_', '-')}`" in row
        # An empty default is written `""`: an empty code span does not show.
        default = '""' if field.default == "" else field.default
        assert f"`{default}`" in row
