"""The Pegasus prompts: configuration, not code.

Three ship as defaults (`summary`, `chapters`, `keywords`). A JSON or YAML file named by
MEDIAEMBED_PEGASUS_PROMPTS adds prompts or replaces a default by id (`disabled: true` drops one):

    prompts:
      - id: people
        prompt: "List the people who appear."
        kind: json            # text | json | chapters
        json_schema: {"type": "array", "items": {"type": "string"}}
        temperature: 0.2
        max_output_tokens: 512

A prompt's hash covers what is sent (text, schema, temperature, maxOutputTokens): changing any of them
re-describes every video for that prompt only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml  # dagster's own dependency

from resources.providers.bedrock.pegasus_bodies import DEFAULT_TEMPERATURE, MAX_OUTPUT_TOKENS

PROMPTS_ENV = "MEDIAEMBED_PEGASUS_PROMPTS"
PromptKind = Literal["text", "json", "chapters"]
KINDS: tuple[PromptKind, ...] = ("text", "json", "chapters")

CHAPTER_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "start_sec": {"type": "number"},
            "end_sec": {"type": "number"},
            "title": {"type": "string"},
            "summary": {"type": "string"},
        },
        "required": ["start_sec", "end_sec", "title", "summary"],
    },
}
KEYWORD_SCHEMA: dict[str, Any] = {"type": "array", "items": {"type": "string"}}


@dataclass(frozen=True)
class PegasusPrompt:
    prompt_id: str
    prompt: str
    kind: PromptKind = "text"
    json_schema: dict[str, Any] | None = None
    temperature: float = DEFAULT_TEMPERATURE
    max_output_tokens: int = 1024

    @property
    def prompt_hash(self) -> str:
        """Of exactly what is sent besides the video: a change to any of it is a new description."""
        sent = {
            "kind": self.kind,  # how the answer is read (chapters or JSON): a change re-asks
            "inputPrompt": self.prompt,
            "jsonSchema": self.json_schema,
            "temperature": self.temperature,
            "maxOutputTokens": self.max_output_tokens,
        }
        return hashlib.sha256(json.dumps(sent, sort_keys=True).encode()).hexdigest()[:16]


DEFAULT_PROMPTS: tuple[PegasusPrompt, ...] = (
    PegasusPrompt(
        "summary",
        "Summarize this video in a short paragraph: what is shown, in what order, and what is said or heard.",
        max_output_tokens=1024,
    ),
    PegasusPrompt(
        "chapters",
        "Split this video into chapters at each change of scene or topic. For every chapter give start_sec "
        "and end_sec in seconds from the start of the video, a short title, and a one-line summary.",
        kind="chapters",
        json_schema=CHAPTER_SCHEMA,
        max_output_tokens=2048,
    ),
    PegasusPrompt(
        "keywords",
        "List up to 15 keywords for this video: objects, colours, shapes, places, people and topics shown "
        "or spoken, as single words or short phrases.",
        kind="json",
        json_schema=KEYWORD_SCHEMA,
        max_output_tokens=512,
    ),
)


def _prompt(entry: Any, source: str) -> PegasusPrompt | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"].strip():
        raise ValueError(f"{source}: every prompt needs an `id` string; got {entry!r:.80}")
    prompt_id = entry["id"].strip()
    if entry.get("disabled"):
        return None
    text = entry.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{source}: prompt {prompt_id!r} needs a non-empty `prompt` string")
    kind = entry.get("kind", "text")
    if kind not in KINDS:
        raise ValueError(f"{source}: prompt {prompt_id!r} has kind {kind!r}; choose {', '.join(KINDS)}")
    schema = entry.get("json_schema", CHAPTER_SCHEMA if kind == "chapters" else None)
    if kind != "text" and not isinstance(schema, dict):
        raise ValueError(f"{source}: prompt {prompt_id!r} of kind {kind} needs a `json_schema` object")
    if kind == "text" and schema is not None:
        raise ValueError(f"{source}: prompt {prompt_id!r} has a json_schema: give it kind json")
    temperature = entry.get("temperature", DEFAULT_TEMPERATURE)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
        raise ValueError(f"{source}: prompt {prompt_id!r} needs a temperature from 0 to 1")
    tokens = entry.get("max_output_tokens", 1024)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= MAX_OUTPUT_TOKENS:
        raise ValueError(
            f"{source}: prompt {prompt_id!r} needs max_output_tokens from 1 to {MAX_OUTPUT_TOKENS}"
        )
    return PegasusPrompt(prompt_id, text.strip(), kind, schema, float(temperature), tokens)


def merge_prompts(entries: list[Any], source: str) -> tuple[PegasusPrompt, ...]:
    """The defaults with `entries` applied by id: a new id is added, a known one replaced or dropped."""
    chosen = {p.prompt_id: p for p in DEFAULT_PROMPTS}
    for entry in entries:
        parsed = _prompt(entry, source)
        prompt_id = str(entry["id"]).strip()
        if parsed is None:
            chosen.pop(prompt_id, None)
        else:
            chosen[prompt_id] = parsed
    return tuple(chosen.values())


def load_prompts(path: str | None = None) -> tuple[PegasusPrompt, ...]:
    """The prompts of the file `path` (JSON or YAML) over the defaults; unset or empty: the defaults."""
    if not path:
        return DEFAULT_PROMPTS
    file = Path(path).expanduser()
    try:
        text = file.read_text()
    except OSError as error:
        raise ValueError(
            f"cannot read the Pegasus prompts file {file} ({error.strerror}): fix {PROMPTS_ENV}"
        ) from None
    try:
        yaml_file = file.suffix.lower() in (".yaml", ".yml")
        document = yaml.safe_load(text) if yaml_file else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ValueError(f"the Pegasus prompts file {file} is not valid JSON/YAML: {error}") from None
    entries = document.get("prompts") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise ValueError(f"{file}: expected a list of prompts under `prompts`")
    return merge_prompts(entries, str(file))
