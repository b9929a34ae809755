"""deploy/iam-policy.json and its page agree: the statements docs/deployment.md lists are the file's, in its
order, with the placeholders it documents; the file is a template the emulators' evaluator loads once
rendered, allows only, and names no action by wildcard (tests/pipeline/test_iam_policy.py proves it)."""

import json
import re
from pathlib import Path

from emulators.iam_policy import Policy, placeholders, render

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "deploy" / "iam-policy.json").read_text()


def iam_section() -> str:
    page = (ROOT / "docs" / "deployment.md").read_text()
    return page.split("\n## IAM policy\n", 1)[1].split("\n## ", 1)[0]


def test_the_page_lists_the_files_statements_in_order() -> None:
    listed = re.findall(r"^\| `(\w+)` \| ", iam_section(), flags=re.MULTILINE)
    assert listed == [s["Sid"] for s in json.loads(TEMPLATE)["Statement"]]


def test_the_page_documents_every_placeholder() -> None:
    documented = set(re.findall(r"`\$\{(\w+)\}`", iam_section()))
    assert documented == placeholders(TEMPLATE)


def test_the_template_renders_into_an_allow_only_policy_without_wildcard_actions() -> None:
    policy = Policy(render(TEMPLATE, {name: "x" for name in placeholders(TEMPLATE)}))
    assert {s.effect for s in policy.statements} == {"Allow"}
    assert not any(s.not_action or s.not_resource for s in policy.statements)
    assert not [a for s in policy.statements for a in s.actions if "*" in a]
    everywhere = [s.sid for s in policy.statements if "*" in s.resources]
    assert everywhere == ["ListAsyncInvocations"], "only an action without resource-level permissions"
