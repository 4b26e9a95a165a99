"""The README stays true: its role matrix and configuration table match the code."""

from __future__ import annotations

import re
from pathlib import Path

from tenants.permissions import matrix_markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_role_matrix_is_generated_from_the_permission_map():
    block = README.split("<!-- role-matrix:start -->\n", 1)[1].split("\n<!-- role-matrix:end -->", 1)[0]
    assert block.strip() == matrix_markdown().strip()


def test_readme_plan_table_is_generated_from_the_catalogue():
    from billing.plans import plans_markdown

    block = README.split("<!-- plans:start -->\n", 1)[1].split("\n<!-- plans:end -->", 1)[0]
    assert block.strip() == plans_markdown().strip()


def test_every_environment_variable_the_settings_read_is_documented():
    sources = "".join(p.read_text() for p in (ROOT / "falcon").glob("*.py"))
    read = set(re.findall(r'env_(?:str|int|bool|list|is_set|raw)\(\s*"([A-Z_]+)"', sources))
    assert read, "no environment readers found"
    first_cells = re.findall(r"^\| (`[^|]+) \|", README, flags=re.MULTILINE)
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}
    assert read - documented == set()
