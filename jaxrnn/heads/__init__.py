"""Output heads for sequence tasks: the linear-chain CRF (``jaxrnn.heads.crf``) and CTC
(``jaxrnn.heads.ctc``)."""

from jaxrnn.heads import crf, ctc

__all__ = ["crf", "ctc"]
