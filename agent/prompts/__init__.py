"""Voice prompts: the catalogue, the WAV files and the cache of rendered speech.

- :mod:`agent.prompts.catalogue` — prompt texts per language and repeat patterns;
- :mod:`agent.prompts.wav` — WAV duration, the chime, louder copies;
- :mod:`agent.prompts.cache` — :class:`PromptCache`, rendering off the latency path.

The public names are re-exported here, so ``from agent.prompts import X`` works.
"""

from agent.prompts.cache import PromptCache, WarmReport, cache_key, default_cache_dir
from agent.prompts.catalogue import (
    ASSETS_DIR,
    MAX_VOLUME,
    MIN_VOLUME,
    PATTERN_NAMES,
    PATTERNS_FILE,
    PROMPT_IDS,
    Catalogue,
    Language,
    Pattern,
    Prompt,
    PromptError,
    Step,
)
from agent.prompts.wav import LIMIT_KNEE, scale_wav, wav_duration, wav_rms, write_chime
from fsm.language import COUNTRY_LANGUAGES, ISO_3166_NUMERIC, language_for_country  # until fsm imports it

__all__ = [
    "PromptCache",
    "WarmReport",
    "cache_key",
    "default_cache_dir",
    "ASSETS_DIR",
    "MAX_VOLUME",
    "MIN_VOLUME",
    "PATTERN_NAMES",
    "PATTERNS_FILE",
    "PROMPT_IDS",
    "Catalogue",
    "Language",
    "Pattern",
    "Prompt",
    "PromptError",
    "Step",
    "LIMIT_KNEE",
    "scale_wav",
    "wav_duration",
    "wav_rms",
    "write_chime",
    "COUNTRY_LANGUAGES",
    "ISO_3166_NUMERIC",
    "language_for_country",
]
