"""The demo stores' names have rendered audio, so demo calls open with the store's own name."""

from callcenter.demo import STORES
from dialog.prompts import PromptLibrary, read_wav


def test_every_demo_store_name_is_rendered():
    library = PromptLibrary()
    for store in STORES:
        assert library.has(store.name), f"{store.name}: render it with `callcenter dialog prompts render --extra`"
        samples = read_wav(library.path(store.name), 8000)
        assert 0.6 < len(samples) / 8000 < 4.0  # a spoken store name, not silence or a whole sentence
