"""Interop: run PyTorch ``nn.RNN/LSTM/GRU`` and Flax linen cells here, number for number.

One module per framework, each importing its framework only inside the functions that need
it (``import jaxrnn.interop`` imports neither torch nor flax):

- :mod:`jaxrnn.interop.torch`: ``from_torch`` / ``to_torch``, state dicts, carries and
  ``apply_like_torch`` in PyTorch's layout. A loaded module is a :class:`TorchNet`, the layer
  plus its :class:`TorchConfig`, so every function that needs the configuration reads it
  from the net itself.
- :mod:`jaxrnn.interop.flax`: ``from_flax_linen`` / ``to_flax_linen`` and the carry layouts.

::

    net, params = jr.interop.from_torch(module)
    ys, carry = net.apply(params, xs)
    cell, params = jr.interop.from_flax_linen(flax_cell, variables)

The PyTorch-shaped ``jr.stack`` both the PyTorch interop and the Flax wrappers
(``jaxrnn.nnx``, ``jaxrnn.linen``) build lives in :mod:`jaxrnn.interop._stack`.
"""

from jaxrnn.interop.flax import carry_from_flax, carry_to_flax, from_flax_linen, to_flax_linen
from jaxrnn.interop.torch import (TorchConfig, TorchNet, apply_like_torch, carry_from_torch,
                                  carry_to_torch, config_from_state_dict, config_from_torch,
                                  config_of, from_state_dict, from_torch, to_state_dict,
                                  to_torch, torch_net)

__all__ = [
    "TorchConfig", "TorchNet", "apply_like_torch", "carry_from_flax", "carry_from_torch",
    "carry_to_flax", "carry_to_torch", "config_from_state_dict", "config_from_torch",
    "config_of", "from_flax_linen", "from_state_dict", "from_torch", "to_flax_linen",
    "to_state_dict", "to_torch", "torch_net",
]
