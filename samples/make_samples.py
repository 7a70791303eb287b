"""Create maxconv's sample signals and kernels, deterministically.

There are no real recordings in this project and no network to fetch any, so every
sample is synthesised here from a fixed seed: rerunning the script rewrites the
same files. Run it from anywhere with ``uv run python samples/make_samples.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from maxconv.fir import design_fir

HERE = Path(__file__).resolve().parent
SEED = 20240613

# (F1, F2, F3) formant frequencies in Hz of a few vowels of an adult voice.
VOWELS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
FORMANT_BANDWIDTHS = (90.0, 110.0, 170.0)


def resonate(signal: np.ndarray, frequency: np.ndarray, bandwidth: float, rate: int) -> np.ndarray:
    """Filter through a two-pole resonator whose centre may change every sample.

    A cascade of such resonators is the classic formant synthesiser; the centre is
    per-sample so that formants glide between vowels instead of jumping.

    Parameters
    ----------
    signal
        Excitation, 1-D.
    frequency
        Resonance centre in Hz for each sample of ``signal``.
    bandwidth
        -3 dB bandwidth in Hz, which sets the pole radius.
    rate
        Sample rate in Hz.

    Returns
    -------
    np.ndarray
        The filtered signal, with unity gain at DC so cascades keep a sane level.
    """
    radius = np.exp(-np.pi * bandwidth / rate)
    a1 = (2 * radius * np.cos(2 * np.pi * frequency / rate)).tolist()
    a2 = -(radius**2)
    gains = (1 - np.array(a1) - a2).tolist()
    out = [0.0] * len(signal)
    y1 = y2 = 0.0
    for n, x in enumerate(signal.tolist()):
        y = gains[n] * x + a1[n] * y1 + a2 * y2
        out[n] = y
        y1, y2 = y, y1
    return np.array(out)


def make_speech(rng: np.random.Generator, rate: int = 16000, seconds: float = 2.0) -> np.ndarray:
    """Synthesise a speech-like clip: voiced syllables from a formant synthesiser.

    A glottal pulse train with a falling, wavering pitch excites three formant
    resonators that glide between vowels; syllable envelopes and short noise bursts
    (fricatives) give it the rhythm of speech. It is not real speech, but it has the
    spectral shape and modulation that speech filters are tuned for.

    Parameters
    ----------
    rng
        Source of the pitch jitter, vowel choice and noise.
    rate
        Sample rate in Hz.
    seconds
        Length of the clip.

    Returns
    -------
    np.ndarray
        Mono samples peaking at 0.5.
    """
    count = int(rate * seconds)
    t = np.arange(count) / rate
    # Pitch falls from about 170 Hz to 110 Hz over the phrase, with slow wavering.
    pitch = 170 - 60 * t / seconds + 8 * np.sin(2 * np.pi * 3.1 * t)
    pitch *= 1 + 0.01 * rng.standard_normal(count).cumsum() / np.sqrt(np.arange(1, count + 1))
    phase = np.cumsum(pitch / rate) % 1.0
    # Rosenberg glottal flow: opens over 40% of the period, closes over 16%, then rests.
    flow = np.where(
        phase < 0.4,
        0.5 * (1 - np.cos(np.pi * phase / 0.4)),
        np.where(phase < 0.56, np.cos(0.5 * np.pi * (phase - 0.4) / 0.16), 0.0),
    )
    source = np.diff(flow, prepend=0.0) + 0.02 * rng.standard_normal(count)

    syllables = 8
    edges = np.linspace(0.1, seconds - 0.1, syllables + 1)
    vowels = rng.choice(list(VOWELS), size=syllables)
    envelope = np.zeros(count)
    formants = np.empty((3, count))
    for index, (start, stop) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        span = (t >= start) & (t < stop)
        voiced = (t >= start) & (t < stop - 0.05)
        position = (t[voiced] - start) / (stop - 0.05 - start)
        envelope[voiced] = np.sin(np.pi * position) ** 0.7
        formants[:, span] = np.array(VOWELS[vowels[index]])[:, None]
    formants[:, t < edges[0]] = np.array(VOWELS[vowels[0]])[:, None]
    formants[:, t >= edges[-1]] = np.array(VOWELS[vowels[-1]])[:, None]
    # Glide formants between vowels over about 40 ms.
    smooth = np.hanning(int(0.04 * rate))
    smooth /= smooth.sum()
    pad = len(smooth)
    for row in formants:
        row[:] = np.convolve(np.pad(row, pad, mode="edge"), smooth, mode="same")[pad:-pad]

    voiced_signal = source * envelope
    for frequency, bandwidth in zip(formants, FORMANT_BANDWIDTHS, strict=True):
        voiced_signal = resonate(voiced_signal, frequency, bandwidth, rate)

    # Fricative bursts (like "s") in the gaps between syllables: differentiated noise.
    hiss = np.diff(rng.standard_normal(count), prepend=0.0)
    bursts = np.zeros(count)
    for start in edges[1:-1]:
        span = (t >= start - 0.05) & (t < start)
        bursts[span] = np.hanning(int(span.sum()))
    signal = voiced_signal / np.max(np.abs(voiced_signal)) + 0.08 * hiss * bursts
    return 0.5 * signal / np.max(np.abs(signal))


def make_music(rng: np.random.Generator, rate: int = 44100, seconds: float = 3.0) -> np.ndarray:
    """Synthesise a music-like stereo clip: four chords of harmonic tones.

    Each voice is a tone with 1/k harmonics whose upper partials decay faster,
    like a plucked or struck string, panned across the stereo field, over a bass
    note; a little noise keeps it from being unnaturally clean.

    Parameters
    ----------
    rng
        Source of detuning and noise.
    rate
        Sample rate in Hz.
    seconds
        Length of the clip.

    Returns
    -------
    np.ndarray
        Stereo samples of shape ``(2, frames)`` peaking at 0.7.
    """
    count = int(rate * seconds)
    chords = [  # MIDI notes: C major, A minor, F major, G major
        (48, 60, 64, 67),
        (45, 57, 60, 64),
        (41, 57, 60, 65),
        (43, 59, 62, 67),
    ]
    chord_length = count // len(chords)
    t = np.arange(chord_length) / rate
    out = np.zeros((2, count))
    for index, notes in enumerate(chords):
        segment = slice(index * chord_length, (index + 1) * chord_length)
        for voice, note in enumerate(notes):
            frequency = 440.0 * 2 ** ((note - 69) / 12) * (1 + 0.002 * rng.standard_normal())
            tone = np.zeros(chord_length)
            for harmonic in range(1, 9):
                if harmonic * frequency >= rate / 2:
                    break
                decay = np.exp(-t * (1.5 + 1.2 * harmonic))
                tone += np.sin(2 * np.pi * harmonic * frequency * t) * decay / harmonic
            attack = np.minimum(t / 0.01, 1.0)
            release = np.minimum((t[-1] - t) / 0.05, 1.0)
            tone *= attack * release
            pan = voice / (len(notes) - 1)
            out[0, segment] += np.cos(0.5 * np.pi * pan) * tone
            out[1, segment] += np.sin(0.5 * np.pi * pan) * tone
    out += 0.003 * rng.standard_normal(out.shape)
    return 0.7 * out / np.max(np.abs(out))


def make_room(rng: np.random.Generator, rate: int = 44100, seconds: float = 0.3) -> np.ndarray:
    """Synthesise a small-room impulse response: direct sound, echoes, decaying tail.

    Parameters
    ----------
    rng
        Source of reflection times and the diffuse tail.
    rate
        Sample rate in Hz.
    seconds
        Length of the response.

    Returns
    -------
    np.ndarray
        Mono response with the direct sound at sample 0 and value 1.0; the tail
        decays 60 dB in 0.25 s (RT60) and is slightly low-passed, as air and walls
        absorb high frequencies faster.
    """
    count = int(rate * seconds)
    t = np.arange(count) / rate
    tail = rng.standard_normal(count) * 10 ** (-3 * t / 0.25)
    tail = np.convolve(tail, np.ones(3) / 3, mode="same")
    tail[: int(0.005 * rate)] = 0.0  # diffuse sound arrives after the first echoes
    response = 0.3 * tail / np.max(np.abs(tail))
    for delay in rng.uniform(0.002, 0.03, size=6):
        response[int(delay * rate)] += rng.choice([-1.0, 1.0]) * 0.6 * np.exp(-delay / 0.02)
    response[0] = 1.0
    return response


def write_eq(path: Path) -> None:
    """Write a 31-tap presence-boost EQ in the text format of SoX's ``fir`` effect.

    The filter is a unit impulse plus a 1-3 kHz band-pass (for 16 kHz audio), which
    lifts the band where speech intelligibility lives by about 6 dB.

    Parameters
    ----------
    path
        File to write.
    """
    taps = design_fir("bandpass", (1000.0, 3000.0), 16000, taps=31, window="hamming")
    taps[15] += 1.0
    lines = [
        "# maxconv sample: 31-tap presence boost (+6 dB at 1-3 kHz) for 16 kHz audio",
        "# unit impulse + hamming-windowed bandpass 1000-3000 Hz; made by make_samples.py",
        "# one coefficient per line; '#' starts a comment (SoX fir format)",
        *(repr(float(tap)) for tap in taps),
    ]
    path.write_text("\n".join(lines) + "\n")


def zero_peak_timestamp(path: Path) -> None:
    """Zero the time stamp libsndfile puts in a float WAV's PEAK chunk.

    Without this, every run would write a different ``room.wav`` although the
    samples are identical, and the sample files would churn in version control.

    Parameters
    ----------
    path
        A RIFF/WAV file; files without a PEAK chunk are left as they are.
    """
    data = bytearray(path.read_bytes())
    offset = 12  # after "RIFF", the RIFF size and "WAVE"
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        if data[offset : offset + 4] == b"PEAK":
            data[offset + 12 : offset + 16] = bytes(4)  # after the chunk header and version
            path.write_bytes(data)
            return
        offset += 8 + size + size % 2


def main() -> None:
    """Write every sample into the folder this script lives in."""
    rng = np.random.default_rng(SEED)
    sf.write(HERE / "speech.wav", make_speech(rng), 16000, subtype="PCM_16")
    sf.write(HERE / "music.flac", make_music(rng).T, 44100, subtype="PCM_16")
    sf.write(HERE / "room.wav", make_room(rng), 44100, subtype="FLOAT")
    zero_peak_timestamp(HERE / "room.wav")
    np.save(HERE / "lowpass.npy", design_fir("lowpass", 4000.0, 44100, taps=101))
    write_eq(HERE / "eq.txt")


if __name__ == "__main__":
    main()
