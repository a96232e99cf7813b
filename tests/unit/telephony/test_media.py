import threading

import numpy as np

from callcenter.domain import AudioFrame
from callcenter.telephony.media import FrameStream, PcmPlayback, StreamPlayback


def test_pcm_playback_reads_whole_frames_pads_the_last_and_then_finishes():
    pb = PcmPlayback(bytes(range(100)) * 10, rate=8000)  # 1000 bytes = 500 samples
    chunks = [pb.read(320) for _ in range(4)]
    assert [len(c) for c in chunks] == [320, 320, 320, 320]
    assert chunks[3][:40] == (bytes(range(100)) * 10)[960:1000] and chunks[3][40:] == bytes(280)
    assert pb.done and not pb.interrupted  # done as its last frame goes out
    assert pb.read(320) is None
    assert pb.wait(0) and pb.played_seconds == 0.0625


def test_stopping_a_playback_finishes_it_at_the_next_frame():
    pb = PcmPlayback(bytes(16000), rate=8000)
    pb.read(320)
    waiter = threading.Thread(target=pb.wait, args=(5,))
    waiter.start()
    pb.stop()
    assert pb.read(320) is None
    waiter.join(1)
    assert not waiter.is_alive() and pb.done and pb.interrupted


def test_a_queued_playback_stopped_before_it_started_is_done_at_once():
    pb = PcmPlayback(bytes(640), rate=16000)
    pb.stop()
    assert pb.done and pb.wait(0)


def test_stream_playback_plays_what_is_written_resampled_then_finishes_after_close():
    x = (np.sin(np.arange(2400) * 2 * np.pi * 440 / 24000) * 10000).astype("<i2").tobytes()
    stream = StreamPlayback(call_rate=16000, sample_rate=24000)
    assert stream.read(640) == bytes(640)  # nothing written yet: silence, not the end
    assert stream.underruns == 0  # not started: waiting for the synthesiser is not an underrun
    stream.write(x[:2400])
    stream.write(x[2400:])
    stream.close()
    out = b""
    while (chunk := stream.read(640)) is not None:
        out += chunk
    assert stream.done and not stream.interrupted
    assert abs(len(out) - 2 * 1600) <= 640  # 0.1 s at 16 kHz, rounded up to whole frames
    assert np.abs(np.frombuffer(out, "<i2")).max() > 8000


def test_stream_playback_counts_underruns_after_it_started():
    stream = StreamPlayback(call_rate=8000, sample_rate=8000)
    stream.write(bytes(320))
    assert stream.read(320) == bytes(320)
    assert stream.read(320) == bytes(320) and stream.underruns == 1
    stream.stop()
    assert stream.read(320) is None and stream.done and stream.interrupted


def test_frame_stream_delivers_in_order_and_ends_with_none():
    fs = FrameStream()
    frames = [AudioFrame(bytes([i]) * 4, 8000, 1, i * 0.02) for i in range(5)]
    for f in frames:
        fs.put(f)
    fs.close()
    fs.put(frames[0])  # after the end: ignored
    assert list(fs) == frames
    assert fs.get(timeout=0) is None and fs.finished


def test_frame_stream_drops_the_oldest_when_the_consumer_falls_behind():
    fs = FrameStream(max_frames=3)
    for i in range(10):
        fs.put(AudioFrame(bytes(4), 8000, 1, i * 0.02))
    assert fs.dropped == 7
    assert [f.timestamp for f in (fs.get(0), fs.get(0), fs.get(0))] == [0.14, 0.16, 0.18]
    assert fs.get(timeout=0.01) is None and not fs.finished  # a timeout, not the end
