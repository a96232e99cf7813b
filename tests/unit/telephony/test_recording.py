import json
import wave

import numpy as np

from callcenter.telephony.recording import CallRecording, RecordingWriter


def frame(value: int, samples: int = 160) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


def read_stereo(path):
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (2, 2)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        return w.getframerate(), data


def test_left_is_the_customer_right_is_our_side_frame_by_frame(tmp_path):
    rec = CallRecording(tmp_path / "c.wav", 8000, "c1", 320)
    for i in range(5):
        rec.customer(frame(100 + i))
        rec.ours(frame(-i))
    meta_path = rec.close({"disposition": "answered"})
    rate, data = read_stereo(tmp_path / "c.wav")
    assert rate == 8000 and len(data) == 800
    assert list(data[::160, 0]) == [100, 101, 102, 103, 104]
    assert list(data[::160, 1]) == [0, -1, -2, -3, -4]
    meta = json.loads(meta_path.read_text())
    assert meta["call_id"] == "c1" and meta["disposition"] == "answered" and meta["seconds"] == 0.1
    assert meta["channels"] == {"left": "customer", "right": "robot and agent"}


def test_the_wav_is_valid_after_every_flush_so_a_killed_worker_leaves_a_playable_file(tmp_path):
    rec = CallRecording(tmp_path / "c.wav", 16000, "c2", 640)
    for _ in range(3):
        rec.customer(frame(7, 320))
        rec.ours(frame(9, 320))
    rec.flush()
    rate, data = read_stereo(tmp_path / "c.wav")  # still open for writing
    assert rate == 16000 and len(data) == 960 and (data[:, 0] == 7).all() and (data[:, 1] == 9).all()
    rec.close({})


def test_a_side_that_lags_is_padded_with_silence_and_agent_audio_is_mixed_into_our_side(tmp_path):
    rec = CallRecording(tmp_path / "c.wav", 8000, "c3", 320)
    for i in range(15):
        rec.customer(frame(1))
    rec.flush()  # our side produced nothing for 15 frames: only the last 10 are held back
    for i in range(15):
        rec.ours(frame(2))
        rec.mix(frame(3))
    rec.close({})
    _, data = read_stereo(tmp_path / "c.wav")
    assert len(data) == 20 * 160
    assert (data[:5 * 160, 1] == 0).all()  # padding
    assert (data[5 * 160:, 1] == 5).all()  # ours + agent
    assert (data[15 * 160:, 0] == 0).all()  # customer padded at the end


def test_the_writer_thread_flushes_live_recordings(tmp_path):
    writer = RecordingWriter(interval=0.01)
    rec = CallRecording(tmp_path / "c.wav", 8000, "c4", 320)
    writer.add(rec)
    rec.customer(frame(5))
    rec.ours(frame(6))
    for _ in range(200):
        if rec.seconds > 0:
            break
        writer._stop.wait(0.01)
    writer.remove(rec)
    writer.close()
    assert rec.seconds == 0.02
    rec.close({})
