"""Transcription engines behind one interface, and live utterance segmentation (seed 004).

- :class:`PocketSphinxEngine` is the default. Its wheel ships an English
  acoustic model, dictionary and language model, so it works offline. With a
  JSGF grammar (a file, or a phrase list turned into one) decoding is
  constrained to those phrases, which is what makes exact test assertions
  possible; free decoding with the default language model is only roughly right.
- :class:`FasterWhisperEngine` is used when the optional ``faster-whisper``
  package is installed *and* a local model directory is given; models are never
  downloaded. Otherwise it raises :class:`EngineUnavailable` with the fix.

Each engine creates its decoder/model once and reuses it for every chunk: a
pocketsphinx decoder with the default language model costs about 90 MiB of
native memory, a whisper model 150 MB to 2.5 GB (seed 004's table), so one per
chunk is the leak the ``decoder_per_chunk`` fault reproduces.

:class:`StreamingTranscriber` cuts a live stream into utterances with
pocketsphinx's voice-activity endpointer and transcribes each one; its
utterance buffer is preallocated, so a speaker who never pauses costs at most
``max_utterance_seconds`` of audio.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from reference_app import faults
from reference_app.endpointing import SpeechFramer, new_endpointer

log = logging.getLogger(__name__)

COMPONENT = "transcription engines"
faults.register(
    "decoder_per_chunk",
    COMPONENT,
    "a new decoder is created for every chunk and kept in a module-level list "
    "(about 90 MiB of native memory each with the default language model, ~6 MiB with a grammar)",
)

# Seed 004: approximate resident memory of each whisper model size, in MB.
WHISPER_MODEL_MEMORY_MB: dict[str, int] = {
    "tiny": 150,
    "base": 250,
    "small": 500,
    "medium": 1500,
    "large": 2500,
}
# Measured on this project's machines: one decoder with the default US English
# language model adds ~91 MiB of RSS; with a JSGF grammar instead, ~28 MiB.
POCKETSPHINX_MEMORY_MB = 100
# Seed 004: buffers and app overhead allowed on top of the model.
BUFFER_OVERHEAD_MB = 512

ENGINES = ("pocketsphinx", "whisper")

# Where decoders go under the decoder_per_chunk fault: module level, as a
# well-meant "keep them for reuse" cache that nothing ever reads or clears.
_DECODER_CACHE: list[Any] = []


class TranscriptionError(Exception):
    """The engine cannot be set up as asked (bad grammar, unknown word, ...)."""


class EngineUnavailable(TranscriptionError):
    """The engine's package or model is not available here."""


def memory_budget_mb(engine: str, model_size: str = "base") -> int:
    """Process memory budget for an engine: model memory plus buffer overhead.

    >>> memory_budget_mb("whisper", "small")
    1012
    """
    if engine == "pocketsphinx":
        return POCKETSPHINX_MEMORY_MB + BUFFER_OVERHEAD_MB
    if engine == "whisper":
        if model_size not in WHISPER_MODEL_MEMORY_MB:
            raise TranscriptionError(
                f"unknown whisper model size {model_size!r}; "
                f"expected one of {', '.join(WHISPER_MODEL_MEMORY_MB)}"
            )
        return WHISPER_MODEL_MEMORY_MB[model_size] + BUFFER_OVERHEAD_MB
    raise TranscriptionError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


class Engine(Protocol):
    """A speech-to-text engine fed 16-bit mono PCM at :attr:`sample_rate`."""

    name: str
    sample_rate: int

    def transcribe(self, pcm: np.ndarray) -> str:
        """Text of one chunk or utterance (int16, shape ``(n,)``); '' for no speech."""

    def close(self) -> None: ...


_WORD = re.compile(r"^[a-z][a-z']*$")


def phrases_to_jsgf(phrases: Sequence[str]) -> str:
    """A JSGF grammar accepting one or more of ``phrases`` in a row.

    One or more, not exactly one: a chunk cut from a long recording may hold
    several phrases, and the grammar must still cover it.
    """
    cleaned = []
    for phrase in phrases:
        words = phrase.lower().split()
        bad = [w for w in words if not _WORD.match(w)]
        if not words or bad:
            raise TranscriptionError(
                f"phrase {phrase!r} must be words of letters and apostrophes only"
            )
        cleaned.append(" ".join(words))
    if not cleaned:
        raise TranscriptionError("the phrase list is empty")
    return (
        "#JSGF V1.0;\ngrammar phrases;\n"
        f"<phrase> = {' | '.join(cleaned)};\n"
        "public <utterance> = <phrase>+;\n"
    )


class PocketSphinxEngine:
    """CMU pocketsphinx with its bundled US English model.

    Example::

        engine = PocketSphinxEngine(phrases=["turn off the radio"])
        engine.transcribe(pcm16k)  # 'turn off the radio'
    """

    name = "pocketsphinx"
    sample_rate = 16_000

    def __init__(
        self,
        *,
        grammar: str | os.PathLike[str] | None = None,
        phrases: Sequence[str] | None = None,
        config_faults: Iterable[str] = (),
    ) -> None:
        if grammar is not None and phrases:
            raise TranscriptionError("give either a grammar file or a phrase list, not both")
        self._grammar_text: str | None = None
        if grammar is not None:
            self._grammar_text = self._read_grammar(Path(grammar))
        elif phrases:
            self._grammar_text = phrases_to_jsgf(phrases)
        self._phrases = list(phrases or [])
        self._per_chunk = faults.is_enabled("decoder_per_chunk", config_faults)
        self._lock = threading.Lock()
        self._decoder = self._new_decoder()
        self.memory_mb = POCKETSPHINX_MEMORY_MB

    @staticmethod
    def _read_grammar(path: Path) -> str:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TranscriptionError(f"{path}: no such grammar file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TranscriptionError(f"{path}: cannot read grammar ({exc})") from None
        # pocketsphinx's parser echoes unparsable input to stdout before failing;
        # refusing anything that is not JSGF at all keeps that noise away.
        if not text.lstrip().startswith("#JSGF"):
            raise TranscriptionError(f"{path}: not a JSGF grammar (must start with '#JSGF')")
        return text

    def _new_decoder(self) -> Any:
        from pocketsphinx import Decoder

        if self._grammar_text is None:
            return Decoder(loglevel="FATAL")
        decoder = Decoder(lm=None, loglevel="FATAL")
        missing = sorted(
            {w for p in self._phrases for w in p.lower().split() if decoder.lookup_word(w) is None}
        )
        if missing:
            raise TranscriptionError(
                f"word(s) not in the pronunciation dictionary: {', '.join(missing)}"
            )
        try:
            decoder.add_jsgf_string("grammar", self._grammar_text)
        except (ValueError, RuntimeError):
            raise TranscriptionError(
                "the JSGF grammar does not parse (check syntax and that every word is "
                "in the dictionary)"
            ) from None
        decoder.activate_search("grammar")
        return decoder

    def transcribe(self, pcm: np.ndarray) -> str:
        data = np.ascontiguousarray(pcm, dtype=np.int16)
        if data.size == 0:
            return ""
        with self._lock:
            decoder = self._decoder
            if self._per_chunk:
                decoder = self._new_decoder()
                _DECODER_CACHE.append(decoder)
            decoder.start_utt()
            decoder.process_raw(data.tobytes(), False, True)
            decoder.end_utt()
            hyp = decoder.hyp()
        return "" if hyp is None else str(hyp.hypstr).strip()

    def transcribe_partial(self, pcm: np.ndarray) -> str:
        """The best hypothesis so far for an utterance still being spoken.

        Read before the utterance ends, so a grammar search reports the words
        it has matched even though no complete phrase is reached yet.
        """
        data = np.ascontiguousarray(pcm, dtype=np.int16)
        if data.size == 0:
            return ""
        with self._lock:
            decoder = self._decoder
            decoder.start_utt()
            try:
                decoder.process_raw(data.tobytes(), False, False)
                hyp = decoder.hyp()
            finally:
                decoder.end_utt()
        return "" if hyp is None else str(hyp.hypstr).strip()

    def close(self) -> None:
        # Dropping the reference frees the native decoder (Cython dealloc).
        self._decoder = None


class FasterWhisperEngine:
    """faster-whisper (CTranslate2) on CPU, from a local model directory only."""

    name = "whisper"
    sample_rate = 16_000

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None,
        model_size: str = "base",
        compute_type: str = "int8",
        config_faults: Iterable[str] = (),
    ) -> None:
        self.memory_mb = memory_budget_mb("whisper", model_size) - BUFFER_OVERHEAD_MB
        try:
            import faster_whisper
        except ImportError:
            raise EngineUnavailable(
                "the whisper engine needs faster-whisper, which is not installed "
                "(pip install 'memwatch-reference-app[whisper]')"
            ) from None
        if model_path is None:
            raise EngineUnavailable(
                "the whisper engine needs a local model directory (--model-path); "
                "models are never downloaded"
            )
        path = Path(model_path)
        if not path.is_dir():
            raise EngineUnavailable(f"{path}: whisper model directory not found")
        self._per_chunk = faults.is_enabled("decoder_per_chunk", config_faults)
        self._factory: Callable[[], Any] = lambda: faster_whisper.WhisperModel(
            str(path), device="cpu", compute_type=compute_type, local_files_only=True
        )
        self._model: Any = self._factory()

    def transcribe(self, pcm: np.ndarray) -> str:
        if pcm.size == 0:
            return ""
        model = self._model
        if self._per_chunk:
            model = self._factory()
            _DECODER_CACHE.append(model)
        audio = np.asarray(pcm, dtype=np.float32) / 32768.0
        segments, _info = model.transcribe(audio, language="en", beam_size=1)
        return " ".join(s.text.strip() for s in segments).strip()

    def close(self) -> None:
        self._model = None


def create_engine(
    name: str = "pocketsphinx",
    *,
    grammar: str | os.PathLike[str] | None = None,
    phrases: Sequence[str] | None = None,
    model_path: str | os.PathLike[str] | None = None,
    model_size: str = "base",
    config_faults: Iterable[str] = (),
) -> Engine:
    """Build the named engine; raises :class:`TranscriptionError` with the reason."""
    if name == "pocketsphinx":
        return PocketSphinxEngine(grammar=grammar, phrases=phrases, config_faults=config_faults)
    if name == "whisper":
        if grammar is not None or phrases:
            raise TranscriptionError("grammars and phrase lists work with pocketsphinx only")
        return FasterWhisperEngine(
            model_path=model_path, model_size=model_size, config_faults=config_faults
        )
    raise TranscriptionError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")


class StreamingTranscriber:
    """Endpointed live transcription: feed PCM blocks, get finished utterances.

    Example::

        st = StreamingTranscriber(engine)
        for text in st.feed(pcm_block):
            print(text)
        for text in st.flush():
            print(text)
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_utterance_seconds: float = 15.0,
        vad_window: float = 0.3,
        vad_ratio: float = 0.9,
    ) -> None:
        self.engine = engine
        self.framer = SpeechFramer(new_endpointer(vad_window, vad_ratio, engine.sample_rate))
        self._max = int(max_utterance_seconds * engine.sample_rate)
        self._utt = np.zeros(self._max, dtype=np.int16)  # preallocated utterance buffer
        self._utt_len = 0
        self.utterances = 0
        self.forced_cuts = 0
        self.audio_frames = 0

    def feed(self, pcm: np.ndarray) -> list[str]:
        """Consume int16 mono samples; return texts of utterances that ended."""
        texts: list[str] = []
        data = np.asarray(pcm, dtype=np.int16).ravel()
        self.audio_frames += len(data)
        for speech, ended in self.framer.feed(data):
            if speech is not None:
                self._append(speech, texts)
            if ended:
                self._finish(texts)
        return texts

    def _append(self, samples: np.ndarray, texts: list[str]) -> None:
        room = self._max - self._utt_len
        if len(samples) > room:
            # Bounded memory: a speaker who never pauses gets cut, not buffered.
            self._utt[self._utt_len :] = samples[:room]
            self._utt_len = self._max
            self.forced_cuts += 1
            self._finish(texts)
            samples = samples[room:]
        self._utt[self._utt_len : self._utt_len + len(samples)] = samples
        self._utt_len += len(samples)

    def _finish(self, texts: list[str]) -> None:
        if self._utt_len == 0:
            return
        text = self.engine.transcribe(self._utt[: self._utt_len])
        self._utt_len = 0
        self.utterances += 1
        if text:
            texts.append(text)

    def flush(self) -> list[str]:
        """End of stream: transcribe whatever speech is still buffered."""
        texts: list[str] = []
        rest = self.framer.flush()
        if rest is not None:
            self._append(rest, texts)
        self._finish(texts)
        return texts
