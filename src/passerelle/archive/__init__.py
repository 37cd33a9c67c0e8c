"""The versioned archive: a DataLad dataset that gets one tagged version per run.

The BIDS raw dataset sits at the root, the pseudonymised DICOM under ``sourcedata/dicom``
and every ``derivatives/<pipeline>`` is a subdataset. Imaging files are annexed (SHA256E
keys), small text stays in git. Modules by concern: ``tools`` (git, git-annex, DataLad),
``layout`` (creation, paths), ``lock`` (one writer at a time, interrupted-save recovery),
``store`` (stage, checksum, save, tag), ``records`` (version records, CHANGES, config),
``ledger`` (which session is in which dataset since when), ``runstep`` (the workflow's
last step), ``submission`` (outside work), ``query``, ``retention``, ``rerun``, ``nightly``.
"""
