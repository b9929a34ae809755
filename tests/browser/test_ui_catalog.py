"""The Dagster UI of `mediaembed dev` reads as a catalog: the code location is `mediaembed`, every asset
shows a name of its own, and the serving pointer sits in its own group, as a person sees them in Debian's
chromium (a screenshot of the catalog goes to `test-artifacts/`)."""

from __future__ import annotations

from tests.browser.test_ui_backfill import ARTIFACTS, CHROMIUM, PAGE_MS, sync_api
from tests.dev_stack import DevStack, dev_stack

__all__ = ["dev_stack"]  # the fixture, shared with the backfill test

CATALOG = """
query Catalog {
  workspaceOrError { ... on Workspace { locationEntries { name } } }
  assetNodes { assetKey { path } groupName }
}
"""


def test_the_ui_names_the_location_and_every_asset_for_what_it_is(dev_stack: DevStack) -> None:
    found = dev_stack.graphql(CATALOG)
    assert [e["name"] for e in found["workspaceOrError"]["locationEntries"]] == ["mediaembed"]
    groups = {tuple(node["assetKey"]["path"]): node["groupName"] for node in found["assetNodes"]}
    names = [path[-1] for path in groups]
    assert len(names) == len(set(names)), sorted(names)  # the UI lists an asset by its last key part
    assert groups[("search", "serving_version")] == "serving"
    assert [path for path, group in groups.items() if group == "serving"] == [("search", "serving_version")]
    assert {("pegasus", "descriptions"), ("search", "description_index")} <= set(groups)

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(PAGE_MS)
        try:
            page.goto(f"{dev_stack.url}/assets/search/serving_version")
            page.get_by_role("button", name="Skip").click()  # "Join the Dagster community", first visit
            page.get_by_text("serving_version").first.wait_for()
            page.get_by_text("mediaembed").first.wait_for()
            page.screenshot(path=str(ARTIFACTS / "ui_catalog_serving_version.png"))
        finally:
            browser.close()
