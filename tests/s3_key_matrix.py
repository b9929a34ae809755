"""Keys S3 allows that a URL parser or a filesystem path would change: the matrix every layer must keep."""

import unicodedata

KEY_BYTES_MAX = 1024  # S3's limit, in UTF-8 bytes


def long_key(extension: str) -> str:
    """A key of exactly 1,024 UTF-8 bytes, with two-byte characters so bytes and characters differ."""
    head = "long/" + "é" * 200
    filler = KEY_BYTES_MAX - len(head.encode()) - len(extension.encode())
    key = head + "x" * filler + extension
    assert len(key.encode()) == KEY_BYTES_MAX
    return key


def hostile_keys(extension: str) -> dict[str, str]:
    """label -> key, every key ending in `extension` (the trailing-space key after it)."""
    return {
        "unicode NFC": unicodedata.normalize("NFC", f"unicode/café crème{extension}"),
        "unicode NFD": unicodedata.normalize("NFD", f"unicode/café crème{extension}"),
        "spaces": f"with spaces/a b  c{extension}",
        "tab": f"tab\there{extension}",
        "literal %20": f"literal%20percent{extension}",
        "plus": f"plus+sign{extension}",
        "hash": f"hash#fragment{extension}",
        "question mark": f"question?mark{extension}",
        "ampersand": f"amp&ersand{extension}",
        "equals": f"equals=sign{extension}",
        "dot-dot": f"dots/../up{extension}",
        "leading slash": f"/leading-slash{extension}",
        "double slash": f"double//slash{extension}",
        "trailing space": f"trailing-space{extension} ",
        "1,024 bytes": long_key(extension),
    }
