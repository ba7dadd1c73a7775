"""The bottom layer: what every other package shares and nothing of the project's own underneath.

* :mod:`core.errors`   the error tree every layer raises, each error with its HTTP status and OpenAI ``type``;
* :mod:`core.literals` the shared vocabularies: sensitivity levels, localities, capabilities, tasks, endpoints;
* :mod:`core.wire`     the OpenAI wire format as typed dicts, and the helpers that read it;
* :mod:`core.strict`   the one strict base for configuration models.

``core`` imports nothing from ``routing``, ``providers`` or ``gateway``; they all import it.
"""
