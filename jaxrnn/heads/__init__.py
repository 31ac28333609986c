"""Output heads for sequence tasks: the linear-chain CRF (``jaxrnn.heads.crf``)."""

from jaxrnn.heads import crf

__all__ = ["crf"]
