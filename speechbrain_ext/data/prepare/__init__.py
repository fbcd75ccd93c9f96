"""One preparer per real corpus, by name.

Every preparer is ``prepare_<corpus>(data_folder, save_folder, *, skip_prep=False, ...)``, reads
the corpus in its public on-disk layout (named in its module docstring), writes manifests in
the schema of ``docs/manifests.md``, skips the work when they already exist, and returns a dict
name → written path. Command line: ``python -m speechbrain_ext.data.prepare CORPUS DATA SAVE``.

Example
-------
>>> from speechbrain_ext.data.prepare import PREPARERS
>>> PREPARERS.names()  # doctest: +NORMALIZE_WHITESPACE
['commonvoice', 'fluent_speech_commands', 'iemocap', 'librimix', 'librispeech', 'quesst',
 'slurp', 'snips', 'speech_commands', 'voxceleb1']
>>> PREPARERS.get("timit")
Traceback (most recent call last):
...
KeyError: "unknown corpus 'timit'; valid names: ..."
"""

from speechbrain_ext.data.prepare.commonvoice import prepare_commonvoice
from speechbrain_ext.data.prepare.fluent_speech_commands import prepare_fluent_speech_commands
from speechbrain_ext.data.prepare.iemocap import leave_one_session_out, prepare_iemocap
from speechbrain_ext.data.prepare.librimix import prepare_librimix
from speechbrain_ext.data.prepare.librispeech import prepare_librispeech
from speechbrain_ext.data.prepare.quesst import prepare_quesst
from speechbrain_ext.data.prepare.slurp import prepare_slurp
from speechbrain_ext.data.prepare.snips import prepare_snips
from speechbrain_ext.data.prepare.speech_commands import prepare_speech_commands
from speechbrain_ext.data.prepare.voxceleb1 import prepare_voxceleb1
from speechbrain_ext.registry import Registry

PREPARERS = Registry("corpus")
for _name, _preparer in {
    "librispeech": prepare_librispeech,
    "voxceleb1": prepare_voxceleb1,
    "slurp": prepare_slurp,
    "iemocap": prepare_iemocap,
    "commonvoice": prepare_commonvoice,
    "speech_commands": prepare_speech_commands,
    "fluent_speech_commands": prepare_fluent_speech_commands,
    "snips": prepare_snips,
    "librimix": prepare_librimix,
    "quesst": prepare_quesst,
}.items():
    PREPARERS.register(_name)(_preparer)


def prepare(corpus: str, data_folder, save_folder, **options):
    """Run the preparer registered as ``corpus``; returns what it returns."""
    return PREPARERS.get(corpus)(data_folder, save_folder, **options)


__all__ = [
    "PREPARERS",
    "leave_one_session_out",
    "prepare",
    "prepare_commonvoice",
    "prepare_fluent_speech_commands",
    "prepare_iemocap",
    "prepare_librimix",
    "prepare_librispeech",
    "prepare_quesst",
    "prepare_slurp",
    "prepare_snips",
    "prepare_speech_commands",
    "prepare_voxceleb1",
]
