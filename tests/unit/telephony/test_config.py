from pathlib import Path

import pytest

from callcenter.config import ConfigError, Settings
from callcenter.telephony.config import SipConfig


def test_settings_from_the_environment_become_a_phone_config():
    s = Settings.from_env({
        "CALLCENTER_DATA_DIR": "/srv/cc",
        "CALLCENTER_SIP_TRUNK": "10.1.2.3:5060",
        "CALLCENTER_SIP_USERNAME": "4sdealer",
        "CALLCENTER_SIP_PASSWORD": "s3cret!",
        "CALLCENTER_SIP_REGISTRAR": "10.1.2.3",
        "CALLCENTER_SIP_PROXY": "10.1.2.4:5070",
        "CALLCENTER_SIP_CALLER_ID": "073184567890",
        "CALLCENTER_SIP_DISPLAY_NAME": "长沙某某4S店",
        "CALLCENTER_SIP_CODECS": "pcmu,PCMA",
        "CALLCENTER_SIP_PORT": "5070",
        "CALLCENTER_RTP_PORT": "30000",
        "CALLCENTER_SIP_RING_TIMEOUT": "35",
        "CALLCENTER_AUDIO_RATE": "8000",
        "CALLCENTER_SIP_MAX_CALLS": "64",
    })
    cfg = SipConfig.from_settings(s)
    assert (cfg.trunk, cfg.registrar, cfg.proxy) == ("10.1.2.3:5060", "10.1.2.3", "10.1.2.4:5070")
    assert cfg.codecs == ("PCMU", "PCMA") and cfg.audio_rate == 8000 and cfg.ring_timeout == 35.0
    assert cfg.max_calls == 64 and cfg.rtp_port_range == 256  # two ports per call, twice over
    assert cfg.recordings_dir == Path("/srv/cc/recordings")
    assert cfg.identity_host == "10.1.2.3"
    assert "s3cret" not in repr(cfg) and "s3cret" not in repr(s)


def test_each_worker_gets_its_own_sip_port_and_rtp_range():
    base = SipConfig(sip_port=5070, rtp_port=20000)
    assert [(w.sip_port, w.rtp_port) for w in map(base.for_worker, range(3))] == [
        (5070, 20000), (5071, 20200), (5072, 20400)]
    assert SipConfig(sip_port=0).for_worker(5).sip_port == 0  # any free port stays any free port


@pytest.mark.parametrize("kwargs,fragment", [
    ({"password": "x"}, "USERNAME is not"),
    ({"registrar": "pbx", "username": "u"}, "needs CALLCENTER_SIP_USERNAME and _PASSWORD"),
    ({"max_calls": 0}, "between 1 and 512"),
    ({"max_calls": 64, "rtp_port_range": 100}, "too small for 64 calls"),
    ({"audio_rate": 44100}, "8000 or 16000"),
    ({"transport": "tls"}, "udp or tcp"),
])
def test_inconsistent_phone_configs_are_refused(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        SipConfig(**kwargs)


@pytest.mark.parametrize("key,value,fragment", [
    ("CALLCENTER_SIP_TRUNK", "gw:99999", "host or host:port"),
    ("CALLCENTER_SIP_CODECS", "PCMA,G729", "PCMA, PCMU, G722"),
    ("CALLCENTER_SIP_CODECS", "PCMA,pcma", "PCMA, PCMU, G722"),
    ("CALLCENTER_SIP_CALLER_ID", "138 1234", "letters, digits"),
    ("CALLCENTER_SIP_DISPLAY_NAME", 'x" <sip:evil>', "no quotes"),
    ("CALLCENTER_SIP_PASSWORD", "a\r\nb", "printable"),
    ("CALLCENTER_SIP_BIND", "eth0", "IP address"),
    ("CALLCENTER_SIP_TRANSPORT", "tls", "expected one of"),
    ("CALLCENTER_AUDIO_RATE", "11025", "expected one of"),
    ("CALLCENTER_SIP_DIAL_PREFIX", "9a", "0-9"),
    ("CALLCENTER_SIP_RING_TIMEOUT", "0", "between"),
])
def test_bad_sip_settings_name_the_variable(key, value, fragment):
    with pytest.raises(ConfigError, match=key) as err:
        Settings.from_env({key: value})
    assert fragment in str(err.value)
    if key == "CALLCENTER_SIP_PASSWORD":
        assert value not in str(err.value)
