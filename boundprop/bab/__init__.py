"""Complete verification by branch and bound: ``search`` (input and activation splitting on
batched domain bounds), ``run`` (every open conjunction of a property, the driver ``verify``
calls) and ``proof`` (the ``boundprop.proof/1`` document that ``boundprop check`` re-verifies).
"""
