"""What the emulated Pegasus 1.2 says about a video: scenes from decoded content, as text or schema JSON.

Each scene is a shot (frame-difference cuts, as Marengo's segments) described by what media_analysis finds
in it: the background colour, the foreground objects (colour and shape) and the audio tone. So a pipeline
that reads the wrong object, or mis-joins chapters and times, gets a checkably wrong description.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from emulators.media_analysis import DecodedMedia, detect_shots, merge_short, tone_in, visual_in

MIN_SCENE_SEC = 1.0  # shorter shots join a neighbour: a flash is not a chapter
CHARS_PER_TOKEN = 4  # output tokens are estimated at 4 characters each (maxOutputTokens truncation)


@dataclass(frozen=True)
class SceneInfo:
    """One scene: its span, what is seen and what is heard."""

    index: int
    start_sec: float
    end_sec: float
    background: str
    objects: tuple[tuple[str, str], ...]  # (colour, shape), most salient first
    tone: str  # low | mid | high | silence
    tone_hz: float

    @property
    def color(self) -> str:
        return self.objects[0][0] if self.objects else self.background

    @property
    def shape(self) -> str:
        return self.objects[0][1] if self.objects else "plain"

    @property
    def title(self) -> str:
        """ "red circle": the most salient object's colour and shape ("plain blue" without objects)."""
        return f"{self.color} {self.shape}" if self.objects else f"plain {self.background}"

    @property
    def summary(self) -> str:
        """One sentence: what is seen on which background, and the tone heard."""
        if self.objects:
            seen = " and ".join(f"{_article(color)} {color} {shape}" for color, shape in self.objects)
            ground = f"{_article(self.background)} {self.background} background"
            picture = f"{seen[0].upper()}{seen[1:]} on {ground}"
        else:
            picture = f"A plain {self.background} picture"
        sound = "in silence" if self.tone == "silence" else f"with a {self.tone} tone ({self.tone_hz:.0f} Hz)"
        return f"{picture}, {sound}."


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _round(t: float) -> float:
    return float(round(t, 3))


def describe_scenes(media: DecodedMedia) -> list[SceneInfo]:
    """The video's scenes in order; the whole video is one scene when there is no cut."""
    if not media.has_video:
        return []
    spans = merge_short(detect_shots(media, 0.0, media.duration), MIN_SCENE_SEC)
    scenes: list[SceneInfo] = []
    for i, (start, end) in enumerate(spans):
        visual = visual_in(media, start, end)
        if visual is None:
            continue
        objects = tuple((o.color, o.shape) for o in visual.objects)
        tone, hz = tone_in(media, start, end) if media.has_audio else ("silence", 0.0)
        scenes.append(SceneInfo(i, _round(start), _round(end), visual.background, objects, tone, hz))
    return scenes


def keywords(scenes: list[SceneInfo]) -> list[str]:
    """Distinct words and phrases of the description, in order of appearance."""
    words: list[str] = []
    for s in scenes:
        words += [f"{c} {shape}" for c, shape in s.objects]
        words += [w for c, shape in s.objects for w in (c, shape)]
        words += [s.background, f"{s.background} background"]
        if s.tone != "silence":
            words.append(f"{s.tone} tone")
    return list(dict.fromkeys(words))


def describe_text(scenes: list[SceneInfo], duration: float) -> str:
    """Plain text: one line for the whole video, then one line per scene with its times."""
    count = f"{len(scenes)} scene{'s' if len(scenes) != 1 else ''}"
    lines = [f"A {duration:g}-second video in {count}."]
    lines += [f"{s.start_sec:g}-{s.end_sec:g} s: {s.summary}" for s in scenes]
    return "\n".join(lines)


# --- structured output: fill a JSON schema from the scenes ----------------------------------------------

_TITLE_NAMES = ("title", "name", "label", "heading", "topic")
_SUMMARY_NAMES = ("summary", "description", "text", "caption", "content", "detail")
_START_NAMES = ("start", "begin", "from")
_END_NAMES = ("end", "stop", "to", "until")


@dataclass(frozen=True)
class _Context:
    scenes: list[SceneInfo]
    duration: float
    text: str
    scene: SceneInfo | None = None


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s and pick the first non-null branch of anyOf / oneOf / allOf."""
    for _ in range(32):
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            schema = target
            continue
        for key in ("anyOf", "oneOf", "allOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                usable = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
                schema = {**{k: v for k, v in schema.items() if k != key}, **(usable or branches)[0]}
                break
        else:
            return schema
    return {}


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _named(name: str, words: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(w in lowered for w in words)


def _string_value(name: str, ctx: _Context) -> str:
    lowered = name.lower()
    scene = ctx.scene
    if scene is not None:
        if _named(name, _TITLE_NAMES):
            return scene.title
        if "background" in lowered:
            return scene.background
        if "colo" in lowered:
            return scene.color
        if "shape" in lowered:
            return scene.shape
        if _named(name, ("tone", "sound", "audio")):
            return scene.tone
        return scene.summary
    if _named(name, _TITLE_NAMES):
        return ", ".join(s.title for s in ctx.scenes) or "an empty video"
    return ctx.text


def _number_value(name: str, ctx: _Context) -> float:
    lowered = name.lower()
    scene = ctx.scene
    if _named(name, ("duration", "length")):
        return scene.end_sec - scene.start_sec if scene else ctx.duration
    if scene is not None:
        if _named(name, _START_NAMES):
            return scene.start_sec
        if _named(name, _END_NAMES):
            return scene.end_sec
        if _named(name, ("hz", "freq", "pitch")):
            return round(scene.tone_hz, 1)
        if _named(name, ("index", "number", "id", "order")):
            return scene.index
    if "count" in lowered:
        return len(ctx.scenes)
    return 0


def _clamp(value: float, schema: dict[str, Any], integer: bool) -> float | int:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if isinstance(lo, int | float):
        value = max(value, lo)
    if isinstance(hi, int | float):
        value = min(value, hi)
    return math.floor(value) if integer else float(value)


def _fill(schema: Any, name: str, ctx: _Context, root: dict[str, Any], depth: int) -> Any:
    resolved = _resolve(schema, root)
    if "const" in resolved:
        return resolved["const"]
    if isinstance(resolved.get("enum"), list) and resolved["enum"]:
        return resolved["enum"][0]
    kind = _type_of(resolved)
    if depth > 8:  # a recursive schema: stop with the smallest value of the type
        return {"object": {}, "array": [], "string": "", "boolean": False, "null": None}.get(kind, 0)
    if kind == "object":
        props = resolved.get("properties")
        if not isinstance(props, dict):
            return {}
        return {key: _fill(sub, key, ctx, root, depth + 1) for key, sub in props.items()}
    if kind == "array":
        items = _resolve(resolved.get("items", {}), root)
        item_kind = _type_of(items)
        values: list[Any]
        if item_kind == "object" and ctx.scene is None:  # one item per scene: chapters
            values = [_fill(items, name, _scene_context(ctx, s), root, depth + 1) for s in ctx.scenes]
        elif item_kind == "string":
            values = keywords([ctx.scene] if ctx.scene else ctx.scenes)
        elif item_kind in ("number", "integer") and ctx.scene is None:
            values = [_fill(items, name, _scene_context(ctx, s), root, depth + 1) for s in ctx.scenes]
        else:
            values = [_fill(items, name, ctx, root, depth + 1)]
        return _bounded(values, resolved)
    if kind == "string":
        return _string_value(name, ctx)
    if kind in ("number", "integer"):
        return _clamp(_number_value(name, ctx), resolved, kind == "integer")
    if kind == "boolean":
        return True
    return None


def _scene_context(ctx: _Context, scene: SceneInfo) -> _Context:
    return _Context(ctx.scenes, ctx.duration, ctx.text, scene)


def _bounded(values: list[Any], schema: dict[str, Any]) -> list[Any]:
    """Respect maxItems (cut) and minItems (repeat the last item) where the schema sets them."""
    hi, lo = schema.get("maxItems"), schema.get("minItems")
    if isinstance(hi, int):
        values = values[:hi]
    if isinstance(lo, int) and values:
        values = values + [values[-1]] * max(0, lo - len(values))
    return values


def describe_json(schema: dict[str, Any], scenes: list[SceneInfo], duration: float) -> Any:
    """A JSON value matching `schema`, filled from the scenes by field name.

    An array of objects gets one item per scene (chapters: start_sec, end_sec, title, summary), an array of
    strings the keywords, a string the text description; other fields get a plain value of their type.
    """
    ctx = _Context(scenes, duration, describe_text(scenes, duration))
    return _fill(schema, "", ctx, schema, 0)


def estimate_tokens(text: str) -> int:
    """Output tokens as the emulator counts them against maxOutputTokens."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def truncate(text: str, max_tokens: int) -> str:
    """The first `max_tokens` tokens' worth of `text`: what a model stopped by the limit has written."""
    return text[: max_tokens * CHARS_PER_TOKEN]
