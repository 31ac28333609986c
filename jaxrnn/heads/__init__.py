"""Output and read-out heads for sequence tasks: the linear-chain CRF (``jaxrnn.heads.crf``),
CTC (``jaxrnn.heads.ctc``) and attention over encoder states (``jaxrnn.heads.attention``)."""

from jaxrnn.heads import attention, crf, ctc

__all__ = ["attention", "crf", "ctc"]
