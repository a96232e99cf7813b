"""The revisit robot: scripts (话术), the conversation engine, NLU and feedback classification.

Pure logic, no SIP, audio or database: transcripts, DTMF and timer events go in, actions come out
(:mod:`dialog.actions`); the campaign's call runner executes them. Modules:

* ``script`` (YAML scripts in ``scripts/``, validation with line numbers) and ``engine`` (the state
  machine of one call); ``amd`` (answering machines and IVRs from the first utterance);
* ``nlu`` (intent, 1-5 score, NPS, callback time; robust to ASR by pinyin: ``phonetic``, ``when``,
  ``numbers``, ``text``);
* ``classifier`` (transformer, n-gram and keyword feedback classifiers behind one protocol);
* ``prompts`` (prompt text and pre-rendered audio fragments in ``audio/``);
* ``datasets`` (the hand-written labelled data in ``data/``, see ``data/DATA_CARD.md``).

Importing this package is cheap: torch and transformers load only when a transformer model is opened.
"""
