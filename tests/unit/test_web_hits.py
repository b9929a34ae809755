"""What the search page shows of a hit, and how a request's parameters are read: pure, no server."""

from __future__ import annotations

import pytest

from mediaembed.search import BadQuery
from mediaembed.web.hits import hit_view, media_fragment, player_of
from mediaembed.web.query import MAX_TOP_K, parse_request
from resources.search.fusion import FusedHit


def test_each_kind_of_object_gets_its_player() -> None:
    assert player_of("s3://media/videos/a.MP4") == "video"
    assert player_of("s3://media/audio/hum_220hz.wav") == "audio"
    assert player_of("s3://media/audio/whistle.flac") == "audio"
    assert player_of("s3://media/images/square.png") == "image"
    assert player_of("s3://media/clips/no-suffix") == "video"


def test_the_player_opens_at_the_span_and_stops_at_its_end() -> None:
    assert media_fragment(4.0, 9.5) == "#t=4,9.5"
    assert media_fragment(0.0, None) == "#t=0"
    assert media_fragment(None, None) == ""


def test_a_hit_shows_its_fused_score_and_every_signal_matched_first() -> None:
    hit = FusedHit(
        media_uri="s3://media/videos/a.mp4",
        start_sec=4.0,
        end_sec=9.0,
        score=0.8,
        fused_score=0.0328,
        signals=("chapter", "visual"),
        model="marengo-3.0",
        signal_scores={"audio": -0.04, "visual": 0.8, "chapter": 2.4},
        snippet="A red\ncircle",
    )
    view = hit_view(1, hit, "http://s3.local/media/videos/a.mp4?X-Amz-Signature=x")
    assert view.src == "http://s3.local/media/videos/a.mp4?X-Amz-Signature=x#t=4,9"
    assert view.signal_scores == (("chapter", 2.4), ("visual", 0.8), ("audio", -0.04))
    assert (view.name, view.span, view.snippet, view.player) == (
        "a.mp4",
        "4.00s - 9.00s",
        "A red circle",
        "video",
    )
    image = hit_view(
        2, FusedHit("s3://m/i.png", None, None, 0.2, 0.01, ("visual",), "marengo-3.0"), "http://x/i.png"
    )
    assert (image.src, image.span) == ("http://x/i.png", "whole object"), "an image has no span to seek"
    assert hit_view(3, hit, None).src is None, "no link: no player, the hit still shows"


def test_request_parameters_are_checked_with_the_clis_words() -> None:
    request = parse_request({"q": "red circle", "mode": "hybrid", "top_k": "20", "model": "marengo-2.7"})
    assert (request.text, request.mode, request.top_k, request.model) == (
        "red circle",
        "hybrid",
        20,
        "marengo-2.7",
    )
    assert request.more == 30 and parse_request({"top_k": str(MAX_TOP_K)}).more is None
    assert parse_request({}).empty and parse_request({"q": ""}).top_k == 10
    for params, words in [
        ({"mode": "fuzzy"}, "--mode must be one of vector, text, hybrid"),
        ({"top_k": "0"}, "--top-k must be 1 or more"),
        ({"top_k": "x"}, "top_k must be a whole number"),
        ({"top_k": "500"}, f"top_k must be at most {MAX_TOP_K}"),
        ({"model": "marengo-9"}, "unknown model 'marengo-9'"),
    ]:
        with pytest.raises(BadQuery, match=words):
            parse_request(params)
