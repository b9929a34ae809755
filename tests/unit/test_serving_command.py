"""`mediaembed serving` ends on Ctrl-C with one line saying where a submitted change goes on, never a
traceback."""

import io
from pathlib import Path

from mediaembed.serving import run_serving


class InterruptedOutput(io.StringIO):
    """An output whose first write is where the person pressed Ctrl-C."""

    def write(self, text: str) -> int:
        raise KeyboardInterrupt


def test_ctrl_c_is_one_line_naming_where_the_change_goes_on(tmp_path: Path) -> None:
    err = io.StringIO()
    env = {"MEDIAEMBED_LAKE_URI": str(tmp_path / "lake")}

    code = run_serving("show", None, False, "", out=InterruptedOutput(), err=err, env=env)

    assert code == 130
    [line] = err.getvalue().splitlines()
    assert line.startswith("mediaembed serving: interrupted; a change already submitted goes on")
    assert "Dagster UI" in line
