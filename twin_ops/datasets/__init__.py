"""Training data from the author's own writing: an instruction dataset (SFT) and a preference
dataset (DPO), both split by source document and validated by their GX suites.

``passages`` cuts cleaned documents into answers; ``instructions`` and ``teacher`` write the
requests they answer; ``build`` runs the stage; ``formats`` turns the stored Parquet into the
conversational formats trl trains on.
"""
