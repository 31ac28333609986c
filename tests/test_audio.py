"""jaxrnn.audio: WAV reading, log-mel against an independent NumPy implementation,
normalization, frame stacking, SpecAugment masking."""

import wave

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import audio
from tests._paths import data_root


def _write_wav(path, data: np.ndarray, rate=8000, width=2, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def test_read_wav_16bit_mono_and_stereo(tmp_path):
    x = np.array([0, 1, -1, 32767, -32768, 1000], np.int16)
    _write_wav(tmp_path / "a.wav", x)
    y, sr = audio.read_wav(tmp_path / "a.wav")
    assert sr == 8000 and y.dtype == np.float32 and y.shape == (6,)
    np.testing.assert_array_equal(y, x.astype(np.float32) / 32768)
    st = np.array([[100, 300], [-200, 0]], np.int16)
    _write_wav(tmp_path / "s.wav", st, rate=16000, channels=2)
    y, sr = audio.read_wav(tmp_path / "s.wav")
    assert sr == 16000
    np.testing.assert_allclose(y, [200 / 32768, -100 / 32768])
    y2, _ = audio.read_wav(tmp_path / "s.wav", mono=False)
    assert y2.shape == (2, 2)


def test_read_wav_errors_name_the_problem(tmp_path):
    _write_wav(tmp_path / "b8.wav", np.array([1, 2, 3], np.uint8), width=1)
    with pytest.raises(ValueError, match=r"b8\.wav: 8-bit samples; only 16-bit PCM"):
        audio.read_wav(tmp_path / "b8.wav")
    _write_wav(tmp_path / "b32.wav", np.array([1, 2], np.int32), width=4)
    with pytest.raises(ValueError, match="32-bit samples"):
        audio.read_wav(tmp_path / "b32.wav")
    (tmp_path / "t.wav").write_bytes(b"hello, not a wav file at all")
    with pytest.raises(ValueError, match=r"t\.wav: not a 16-bit PCM WAV file"):
        audio.read_wav(tmp_path / "t.wav")
    # IEEE float WAV (format tag 3): the wave module refuses it; we say so with the path
    import struct
    data = np.zeros(4, np.float32).tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    (tmp_path / "f.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(ValueError, match=r"f\.wav: not a 16-bit PCM WAV file \(unknown format: 3\)"):
        audio.read_wav(tmp_path / "f.wav")


def test_read_fsdd_recording():
    p = data_root() / "fsdd" / "recordings" / "0_george_0.wav"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    x, sr = audio.read_wav(p)
    assert sr == 8000 and x.ndim == 1 and 1000 < len(x) < 20000 and np.abs(x).max() <= 1


# --------------------------------------------------------------------------- log-mel reference

def _np_log_mel(x, sr, num_mels, frame_ms, hop_ms, n_fft, pre, eps):
    """Written independently of jaxrnn.audio: loops, an explicit DFT matrix, float64."""
    x = np.asarray(x, np.float64)
    y = x.copy()
    for t in range(len(x) - 1, 0, -1):
        y[t] = x[t] - pre * x[t - 1]
    L, hop = int(sr * frame_ms / 1000), int(sr * hop_ms / 1000)
    if len(y) < L:
        y = np.concatenate([y, np.zeros(L - len(y))])
    frames = []
    start = 0
    while start + L <= len(y):
        frames.append(y[start:start + L])
        start += hop
    win = np.array([np.sin(np.pi * n / L) ** 2 for n in range(L)])     # = periodic Hann
    K = n_fft // 2 + 1
    n = np.arange(L)
    dft = np.exp(-2j * np.pi * np.outer(np.arange(K), n) / n_fft)      # [K, L], zero-padded DFT
    # mel filters: HTK scale, triangles between consecutive centre frequencies
    mel = lambda f: 2595 * np.log10(1 + f / 700)
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)
    pts = [inv(mel(0) + i * (mel(sr / 2) - mel(0)) / (num_mels + 1)) for i in range(num_mels + 2)]
    fb = np.zeros((K, num_mels))
    for m in range(num_mels):
        a, b, c = pts[m], pts[m + 1], pts[m + 2]
        for k in range(K):
            f = k * sr / n_fft
            if a < f <= b:
                fb[k, m] = (f - a) / (b - a)
            elif b < f < c:
                fb[k, m] = (c - f) / (c - b)
    out = []
    for fr in frames:
        spec = dft @ (fr * win)
        out.append(np.log((np.abs(spec) ** 2) @ fb + eps))
    return np.array(out)


@pytest.mark.parametrize("n, mels, frame_ms, hop_ms, n_fft", [
    (1234, 20, 25, 10, 256), (3000, 40, 32, 16, 512), (150, 8, 25, 10, 256)])
def test_log_mel_matches_numpy_reference(n, mels, frame_ms, hop_ms, n_fft):
    rng = np.random.default_rng(n)
    t = np.arange(n) / 8000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
    ref = _np_log_mel(x, 8000, mels, frame_ms, hop_ms, n_fft, 0.97, 1e-6)
    got = np.asarray(audio.log_mel(x.astype(np.float32), 8000, num_mels=mels, frame_ms=frame_ms,
                                   hop_ms=hop_ms, n_fft=n_fft))
    assert got.shape == ref.shape == (audio.num_frames(n, int(8 * frame_ms), int(8 * hop_ms)), mels)
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-3)


def test_log_mel_jits_vmaps_and_filterbank_peaks():
    fb = audio.mel_filterbank(40, 256, 8000)
    assert fb.shape == (129, 40) and fb.min() >= 0 and fb.max() <= 1
    assert np.all(fb.max(axis=0) > 0.5)                   # no empty filter at this resolution
    xs = np.random.default_rng(0).standard_normal((3, 2000)).astype(np.float32)
    f = jax.jit(jax.vmap(lambda x: audio.log_mel(x, 8000)))(xs)
    np.testing.assert_allclose(f[1], audio.log_mel(xs[1], 8000), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="fmin < fmax"):
        audio.mel_filterbank(10, 256, 8000, fmax=5000)


def test_normalize_uses_valid_frames_only():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((10, 4)).astype(np.float32) * 3 + 7
    g = np.asarray(audio.normalize(f, 6))
    np.testing.assert_allclose(g[:6].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(g[:6].std(0), 1, atol=1e-3)
    np.testing.assert_array_equal(g[6:], 0)
    np.testing.assert_allclose(g[:6], (f[:6] - f[:6].mean(0)) / np.sqrt(f[:6].var(0) + 1e-5), rtol=1e-4)


def test_log_mel_many_equals_one_by_one():
    rng = np.random.default_rng(2)
    sigs = [rng.standard_normal(n).astype(np.float32) for n in (100, 1500, 2000)]
    many = audio.log_mel_many(sigs, 8000, bucket=1024, num_mels=16)
    ref = jax.jit(lambda s: audio.normalize(audio.log_mel(s, 8000, num_mels=16)))
    for s, m in zip(sigs, many):
        one = ref(s)
        np.testing.assert_allclose(m, one, rtol=1e-4, atol=1e-4)


def test_stack_frames():
    f = np.arange(10, dtype=np.float32).reshape(5, 2)
    s = audio.stack_frames(f, 2)
    np.testing.assert_array_equal(s, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]])
    assert audio.stack_frames(f, 1) is f


def test_spec_augment_masks_bands_and_spans_within_length():
    f = jnp.ones((50, 20))
    out = np.asarray(audio.spec_augment(jax.random.PRNGKey(3), f, 30, freq_masks=1, freq_width=5,
                                        time_masks=1, time_width=10, max_time_fraction=1.0))
    masked = out == 0
    cols = masked.all(axis=0)            # a frequency mask covers whole columns
    rows = masked.all(axis=1)            # a time mask whole rows
    assert cols.sum() <= 5 and rows.sum() <= 10
    assert not rows[30:].any()           # time masks stay inside the valid frames
    assert (masked == (cols[None, :] | rows[:, None])).all()
    # across keys the masks vary and are sometimes non-empty; jit + vmap work
    outs = jax.jit(jax.vmap(lambda k: audio.spec_augment(k, f)))(jax.random.split(jax.random.PRNGKey(0), 16))
    frac = np.asarray((outs == 0).mean(axis=(1, 2)))
    assert frac.max() > 0 and len(np.unique(frac)) > 3
    # no masks: identity
    same = audio.spec_augment(jax.random.PRNGKey(0), f, freq_masks=0, time_masks=0)
    np.testing.assert_array_equal(same, f)
